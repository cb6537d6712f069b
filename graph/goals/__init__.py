"""graph/goals: feature package (see ARCHITECTURE.md)."""
