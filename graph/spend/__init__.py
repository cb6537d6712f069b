"""graph/spend: feature package (see ARCHITECTURE.md)."""
