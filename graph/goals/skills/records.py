"""records: updates contacts, deals and tasks (our own state; nothing outward)."""

from graph.goals.skills import Skill

SKILL = Skill(
    name="records",
    description="create or update contacts, deals and tasks (our own records; nothing leaves)",
    prompt="skill_records",
    tools=(
        "find_contact",
        "upsert_contact",
        "upsert_deal",
        "list_deals",
        "save_todo",
        "list_todos",
        "log_interaction",
    ),
    tier="routine",
)
