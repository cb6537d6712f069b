"""records: updates contacts, deals and tasks (our own state; nothing outward)."""

from graph.skills import Skill

SKILL = Skill(
    name="records",
    description="create or update contacts, deals and tasks (our own records; nothing leaves)",
    prompt="skill_records",
    tools=(
        "find_contact",
        "upsert_contact",
        "upsert_deal",
        "list_deals",
        "upsert_task",
        "list_tasks",
        "log_interaction",
    ),
    tier="routine",
)
