"""billing: proposes invoices from deals and records; each one is a card the operator approves."""

from graph.goals.skills import Skill

SKILL = Skill(
    name="billing",
    description="propose invoices to customers from deals and records (each is an approval card)",
    prompt="skill_billing",
    tools=("find_contact", "recall_memory", "list_deals", "send_invoice"),
    tier="main",
)
