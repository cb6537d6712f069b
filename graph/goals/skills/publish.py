"""publish: puts a finished draft out as a post on one of the operator's configured destinations."""

from graph.goals.skills import Skill

SKILL = Skill(
    name="publish",
    description="publish a post (usually a saved draft) to a destination the operator configured",
    prompt="skill_publish",
    tools=("read_draft", "recall_memory", "publish_post", "current_time"),
    tier="main",
    max_tokens=2048,
)
