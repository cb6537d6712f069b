"""graph/conversation: feature package (see ARCHITECTURE.md)."""
