"""Inbox triage: rules first (the offline mode), then the cheap model; no outward tools."""
