"""The sales pipeline: stages and next steps of contacts, read by /pipeline, the planner and the skills."""
