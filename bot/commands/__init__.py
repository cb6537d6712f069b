"""bot/commands: feature package (see ARCHITECTURE.md)."""
