"""Which MCP tools the operator trusts as read-only, each pinned to the fingerprint (description and schema)
it had when it was trusted: a tool that changes afterwards is a write again until trusted again."""

from __future__ import annotations

from dataclasses import dataclass

from memory.db import Database, utcnow

MCP_TRUST_SCHEMA = """
CREATE TABLE IF NOT EXISTS mcp_trust (
    tool TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    source TEXT NOT NULL,
    trusted_by TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class TrustPin:
    """One trusted tool (``server.tool``), the fingerprint it was trusted with, and who trusted it
    (``config`` for COO_MCP__READ_ONLY, ``command`` for /mcp trust)."""

    tool: str
    fingerprint: str
    source: str
    trusted_by: str


class McpTrustStore:
    """The pins, one row per tool. Only the operator's configuration and the confirmed /mcp trust write it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> None:
        """Create the table."""
        await self._db.script(MCP_TRUST_SCHEMA)

    async def pins(self) -> dict[str, TrustPin]:
        """Every pin by tool."""
        rows = await self._db.fetchall("SELECT tool, fingerprint, source, trusted_by FROM mcp_trust")
        return {row[0]: TrustPin(*row) for row in rows}

    async def pin(self, tool: str, fingerprint: str, source: str, trusted_by: str) -> None:
        """Trust ``tool`` as it is now (replacing an older pin), and record it in the event log."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO mcp_trust (tool, fingerprint, source, trusted_by, at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(tool) DO UPDATE SET fingerprint = excluded.fingerprint, source = excluded.source, "
                "trusted_by = excluded.trusted_by, at = excluded.at",
                (tool, fingerprint, source, trusted_by, utcnow().isoformat()),
            )
            await tx.append_event(
                "mcp.trusted", trusted_by, {"tool": tool, "fingerprint": fingerprint, "source": source}
            )
