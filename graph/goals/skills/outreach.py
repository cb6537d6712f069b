"""outreach: proposes emails to contacts; each one is a card the operator approves."""

from graph.goals.skills import Skill

SKILL = Skill(
    name="outreach",
    description="propose emails to contacts (each is an approval card), e.g. sponsor or client outreach",
    prompt="skill_outreach",
    tools=("find_contact", "recall_memory", "read_draft", "send_email", "log_interaction"),
    tier="main",
    max_tokens=2048,
)
