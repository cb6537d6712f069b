"""The open LanceDB connection and the handles of semantic memory's three tables under one folder.

Opening creates what is missing (with its indexes) and migrates a ``notes`` table of the previous
layout; a table can be swapped for new data, and everything can be reset to empty tables. Callers
(``memory.semantic.store``) hold the locks and turn LanceDB's failures into ``MemoryUnavailable``.
LanceDB itself is imported when a connection is opened, not with this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa

from memory.semantic import indexes
from memory.semantic.lance_import import import_lancedb
from memory.semantic.migration import migrated, needs_migration
from memory.semantic.tables import EPISODES, QUIET, TABLE, TABLES, episodes_schema, notes_schema, quiet_schema

log = logging.getLogger(__name__)


async def _connect(root: Path) -> Any:
    lancedb = import_lancedb()  # ~0.6 s of CPU: only once semantic memory is opened
    return await lancedb.connect_async(str(root))


class OpenTables:
    """The connection and the table handles (by name); ``schema`` is the ``notes`` table's."""

    def __init__(self, root: Path, conn: Any, dim: int, embedder: str) -> None:
        self.root = root
        self._conn = conn
        self._dim = dim
        self._embedder = embedder
        self.tables: dict[str, Any] = {}
        self.schema = notes_schema(dim, embedder)

    @classmethod
    async def open(cls, root: Path, dim: int, embedder: str) -> OpenTables:
        """Connect to ``root`` and open the tables (see :meth:`load`)."""
        tables = cls(root, await _connect(root), dim, embedder)
        await tables.load()
        return tables

    @property
    def notes(self) -> Any:
        """The ``notes`` table."""
        return self.tables[TABLE]

    async def load(self) -> None:
        """Open the tables, creating missing ones, migrating an old ``notes`` layout, adding missing indexes."""
        existing = set((await self._conn.list_tables()).tables)
        schemas = {TABLE: notes_schema(self._dim, self._embedder), QUIET: quiet_schema(), EPISODES: episodes_schema()}
        for name, schema in schemas.items():
            if name in existing:
                self.tables[name] = await self._conn.open_table(name)
            else:
                self.tables[name] = await self._conn.create_table(name, schema=schema)
        self.schema = await self.notes.schema()
        if needs_migration(self.schema):
            table = migrated(await self.notes.query().to_arrow(), self.schema, self._embedder)
            await self.swap(TABLE, table)
            await indexes.ensure_indexes(self.tables, replace=True)
            log.warning("semantic memory: migrated %d note(s) to the current layout", table.num_rows)
        await indexes.ensure_indexes(self.tables)

    def missing(self) -> Path | None:
        """A table folder that is gone (LanceDB's cached handles do not notice a deleted folder)."""
        for name in TABLES:
            if not (self.root / f"{name}.lance").is_dir():
                return self.root / f"{name}.lance"
        return None

    async def swap(self, name: str, data: pa.Table) -> None:
        """Replace table ``name`` by ``data`` (a new version; old files stay until pruned)."""
        old = self.tables[name]
        self.tables[name] = await self._conn.create_table(name, data=data, mode="overwrite")
        old.close()
        if name == TABLE:
            self.schema = await self.notes.schema()

    async def rewritten(self, dim: int, embedder: str) -> None:
        """After ``notes`` was swapped for vectors of ``dim`` by ``embedder``: rebuild every index."""
        self._dim, self._embedder = dim, embedder
        await indexes.ensure_indexes(self.tables, replace=True)

    async def reset(self) -> None:
        """Delete the tables' folders and open empty tables (with indexes). What they held is lost."""
        self.close_tables()
        self.root.mkdir(parents=True, exist_ok=True)
        for name in TABLES:
            path = self.root / f"{name}.lance"
            if path.exists():
                await asyncio.to_thread(shutil.rmtree, path)
        self._conn.close()
        self._conn = await _connect(self.root)
        self.schema = notes_schema(self._dim, self._embedder)
        await self.load()

    def close_tables(self) -> None:
        """Release every table handle (a handle to deleted files may fail to close: it is dropped)."""
        for table in self.tables.values():
            with contextlib.suppress(Exception):
                table.close()
        self.tables.clear()

    def close(self) -> None:
        """Release the tables and the connection."""
        self.close_tables()
        self._conn.close()
