"""graph/models: feature package (see ARCHITECTURE.md)."""
