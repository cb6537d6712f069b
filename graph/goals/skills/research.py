"""research: read-only. Memory, records and history; never changes anything."""

from graph.goals.skills import Skill

SKILL = Skill(
    name="research",
    description="read memory, contacts, tasks and past messages to find facts (read-only)",
    prompt="skill_research",
    tools=("recall_memory", "find_contact", "list_todos", "search_history", "current_time"),
    tier="routine",
    mcp=("*",),  # any read the operator trusts: a calendar, a CRM, notes
)
