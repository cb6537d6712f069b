"""draft: writes a draft (post, newsletter issue, proposal) as a versioned record."""

from graph.goals.skills import Skill

SKILL = Skill(
    name="draft",
    description="write a draft (post, newsletter issue, proposal) and save it as a versioned record",
    prompt="skill_draft",
    tools=("recall_memory", "find_contact", "save_draft", "current_time"),
    tier="main",
    max_tokens=4096,
)
