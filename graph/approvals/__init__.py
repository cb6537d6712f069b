"""graph/approvals: feature package (see ARCHITECTURE.md)."""
