"""Skills are the modules of their folder, and a skill that cannot work stops the start with one line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import graph.goals.skills as skills_pkg
from bot.runtime import open_runtime
from graph.goals.skills import Skill, SkillError, all_skills, check_skills
from tests.conftest import make_settings

SKILL_MODULE = """
from graph.goals.skills import Skill

SKILL = Skill(name="{name}", description="a test skill", prompt="{prompt}", tools={tools!r}, tier="routine")
"""


@pytest.fixture
def skill_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A second folder of the skills package: a module written there is a skill like the shipped ones."""
    folder = tmp_path / "more_skills"
    folder.mkdir()
    monkeypatch.setattr(skills_pkg, "__path__", [*skills_pkg.__path__, str(folder)])
    all_skills.cache_clear()
    yield folder
    all_skills.cache_clear()
    for path in folder.glob("*.py"):
        sys.modules.pop(f"{skills_pkg.__name__}.{path.stem}", None)


def test_every_module_of_the_folder_that_declares_a_skill_is_one() -> None:
    shipped = sorted(p.stem for p in Path(skills_pkg.__file__).parent.glob("*.py") if p.stem != "__init__")
    assert sorted(all_skills()) == shipped == ["billing", "draft", "outreach", "publish", "records", "research"]


def test_a_skill_added_to_the_folder_is_found(skill_folder: Path) -> None:
    (skill_folder / "tally.py").write_text(SKILL_MODULE.format(name="tally", prompt="skill_records", tools=()))
    (skill_folder / "helpers.py").write_text("X = 1\n")  # a module without a skill is not one
    assert "tally" in all_skills() and "helpers" not in all_skills()


def test_a_tool_or_prompt_that_does_not_exist_is_named() -> None:
    typo = Skill("drafty", "d", "skill_draft", ("recall_memory", "save_drafts"), "main")
    with pytest.raises(
        SkillError,
        match="^skill 'drafty' names a tool that does not exist: 'save_drafts'; did you mean 'save_draft'\\?$",
    ):
        check_skills({"drafty": typo}, {"recall_memory", "save_draft"})
    no_prompt = Skill("quiet", "q", "skill_quiet", (), "main")
    with pytest.raises(SkillError, match="^skill 'quiet' has no prompt file prompts/skill_quiet.txt$"):
        check_skills({"quiet": no_prompt}, set())
    check_skills({"drafty": Skill("drafty", "d", "skill_draft", ("save_draft",), "main")}, {"save_draft"})


async def test_a_skill_naming_a_missing_tool_stops_the_start(skill_folder: Path, tmp_path: Path) -> None:
    tools = ("find_contact", "send_emial")
    (skill_folder / "nudge.py").write_text(SKILL_MODULE.format(name="nudge", prompt="skill_outreach", tools=tools))
    with pytest.raises(
        SkillError, match="^skill 'nudge' names a tool that does not exist: 'send_emial'; did you mean 'send_email'\\?$"
    ):
        async with open_runtime(make_settings(tmp_path / "data"), console=False):
            pass


async def test_the_shipped_skills_name_only_tools_that_exist(tmp_path: Path) -> None:
    async with open_runtime(make_settings(tmp_path), console=False) as rt:  # the check runs at every start
        assert rt.tasks is not None
