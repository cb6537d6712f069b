"""memory/semantic: feature package (see ARCHITECTURE.md)."""
