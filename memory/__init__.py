"""Durable state: SQLite event log and records, semantic memory."""
