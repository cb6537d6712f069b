"""Built encoder graphs kept on disk, so that loading the embedding model does not build one each time.

One file per key, in the user's cache folder (``~/.cache/solo-coo`` on Linux, honouring
XDG_CACHE_HOME): derived, disposable, shared by every data dir of the user, never in a data dir. The
key names everything the file's bytes depend on (:func:`memory.semantic.e5_graph.graph_identity`),
so an entry is never used for another model or code version, and nothing needs bumping.

An entry is written to a temporary file in the same folder, flushed to disk and renamed over its
name: a kill -9 mid-write, a full disk or two processes writing at once leave no entry or a whole one
(both writers write the same bytes). A folder that cannot be written costs the time saved, never a
load: the caller builds in memory as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path

import platformdirs

log = logging.getLogger(__name__)

# The same name as bot.settings.APP_NAME (memory/ may not import bot/; a test checks they agree).
APP_NAME = "solo-coo"
# Entries kept: the newest few, so that two versions in use side by side (two installs, two branches)
# do not evict each other on every load; older versions' entries (~22 MB each) go.
KEEP_ENTRIES = 3
# A temporary file this old was left by a writer that died (a write takes well under a second).
STALE_TEMP_S = 3600.0
_ENTRY_GLOB, _TEMP_PREFIX, _TEMP_GLOB = "e5-*.onnx", ".e5-", ".e5-*.tmp"


def user_cache_dir() -> Path:
    """The user's cache folder for solo-coo (``~/.cache/solo-coo`` on Linux, honouring XDG_CACHE_HOME)."""
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


class GraphCache:
    """Serialized encoder graphs in ``folder`` (default: :func:`user_cache_dir`), one file per key."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or user_cache_dir()

    def entry(self, key: str) -> Path:
        """Where the graph for ``key`` is kept (whether or not it is there)."""
        return self.folder / f"e5-{key}.onnx"

    def find(self, key: str) -> Path | None:
        """The entry for ``key`` if there is one (a folder that cannot be read has none)."""
        path = self.entry(key)
        try:
            return path if path.is_file() else None
        except OSError:
            return None

    def store(self, key: str, data: bytes) -> Path | None:
        """Write ``data`` as the entry for ``key``, whole or not at all; None (logged) if the folder refuses it."""
        path = self.entry(key)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_whole(path, data)
        except OSError as exc:
            # Info, not a warning: a read-only home (a container, a sandbox) is a setup that works, at
            # the cost of building the graph on every load.
            log.info("cannot keep the embedding model's graph in %s (%s): it is built on each load", self.folder, exc)
            return None
        log.info("the embedding model's graph is kept in %s", path)
        self._prune(path)
        return path

    def _prune(self, kept: Path) -> None:
        """Drop all but the newest entries and the temporary files of writers that died; errors are ignored."""
        try:
            entries = sorted(self.folder.glob(_ENTRY_GLOB), key=_mtime, reverse=True)
            temps = [p for p in self.folder.glob(_TEMP_GLOB) if time.time() - _mtime(p) > STALE_TEMP_S]
        except OSError:
            return
        for path in [p for p in entries if p != kept][KEEP_ENTRIES - 1 :] + temps:
            with contextlib.suppress(OSError):  # gone already (another process pruned it): nothing to do
                path.unlink()


def _write_whole(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            # On disk before the rename: after a power cut the name never points at unwritten blocks.
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile: the oldest of all
        return 0.0
