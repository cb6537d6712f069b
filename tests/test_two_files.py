"""A connector is its module, and a skill is its module and its prompt: nothing else names them.

Proven with a tiny connector (``bell.ring``: rings an office bell through a signed HTTP POST, with its own
settings ``COO_BELL__URL``/``COO_BELL__SECRET``) and a tiny skill (``chime``, whose one tool is the bell's)
written into a temporary folder. A fresh process adds that folder to the connectors, skills and prompts
folders (as if the files had been dropped there) and runs the product end to end: the bell's slash command
shows a card and one approved ring reaches the bell; a goal's plan uses the chime skill, which the task
runner runs with the fake model, and its ring is a card too. A skill naming a tool that does not exist
stops ``coo run`` with one line. No file of the product mentions the bell or the chime.

The same module is the driver the test starts: ``python -m tests.test_two_files <mode> <plugin> <data>``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

BELL = '''"""bell.ring: rings the office bell (a signed JSON POST to COO_BELL__URL)."""

import hashlib
import hmac
import json
from typing import ClassVar, Literal

import httpx
from pydantic import BaseModel, Field, SecretStr

from connectors.base import (
    Action, ActionError, ActionKind, CommandSpec, ConnectorSpec, Context, Deps, Executed, Preview, ToolSpec,
    TemporaryError,
)
from connectors.http_outcome import http_outcome


class BellSettings(BaseModel):
    url: str | None = None
    secret: SecretStr | None = None


class Ring(Action):
    kind: Literal["bell.ring"] = "bell.ring"
    times: int = Field(ge=1, le=5)
    note: str = Field(min_length=1, max_length=100)


class RingArgs(BaseModel):
    times: int = Field(description="how many times, 1 to 5")
    note: str = Field(description="what the ring is for")


class RingBell(ActionKind[Ring]):
    name = "bell.ring"
    title = "Ring the bell?"
    args = Ring
    command: ClassVar[CommandSpec | None] = CommandSpec("bell", "Ring the bell: /bell <n> | <note>", "/bell 2 | lunch")
    done_verb = "Rung"

    def __init__(self, settings: BellSettings) -> None:
        self._settings = settings
        self.configured = bool(settings.url and settings.secret)
        self.tool = ToolSpec("ring_bell", "Propose ringing the office bell (the operator approves it).", RingArgs)

    def preview(self, action: Ring) -> Preview:
        return Preview(self.title, (("Times", str(action.times)), ("For", action.note)))

    async def from_tool(self, args: BaseModel, ctx: Context) -> Ring:
        return self.build(args.model_dump())

    async def from_command(self, text: str, ctx: Context) -> Ring:
        times, bar, note = text.partition("|")
        if not bar or not times.strip().isdigit():
            raise ActionError("Usage: /bell <times> | <note>")
        return self.build({"times": int(times), "note": note.strip()})

    async def execute(self, action: Ring, idempotency_key: str, progress: object = None) -> Executed:
        assert self._settings.url and self._settings.secret
        body = json.dumps({"times": action.times, "note": action.note, "idempotency_key": idempotency_key}).encode()
        signature = hmac.new(self._settings.secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
        headers = {"Idempotency-Key": idempotency_key, "X-Coo-Signature": "sha256=" + signature}
        try:
            async with httpx.AsyncClient(follow_redirects=False) as client:
                response = await client.post(self._settings.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TemporaryError(f"the bell is unreachable ({type(exc).__name__})") from None
        if failed := http_outcome(response.status_code, "the bell", response.text[:200]):
            raise failed
        return Executed(idempotency_key, f"{action.times} times")

    def secrets(self) -> list[str]:
        return [self._settings.secret.get_secret_value()] if self._settings.secret else []


def connector(settings: BellSettings, deps: Deps) -> list[ActionKind[Ring]]:
    return [RingBell(settings)]


CONNECTOR = ConnectorSpec("bell", BellSettings, connector)
'''

CHIME = '''"""chime: rings the office bell for an occasion."""

from graph.goals.skills import Skill

SKILL = Skill(
    name="chime",
    description="ring the office bell for an occasion (the operator approves each ring)",
    prompt="skill_chime",
    tools=("{tool}",),
    tier="routine",
)
'''

CHIME_PROMPT = "You ring the office bell, once per occasion, with ring_bell; then finish the task.\n"


def write_plugin(folder: Path, tool: str = "ring_bell") -> Path:
    """The tiny connector, skill and prompt in the layout of the product's folders."""
    for part in ("connectors", "skills", "prompts"):
        (folder / part).mkdir(parents=True)
    (folder / "connectors" / "bell.py").write_text(BELL)
    (folder / "skills" / "chime.py").write_text(CHIME.replace("{tool}", tool))
    (folder / "prompts" / "skill_chime.txt").write_text(CHIME_PROMPT)
    return folder


def run_driver(mode: str, plugin: Path, data: Path) -> subprocess.CompletedProcess[str]:
    from tests.conftest import subprocess_env

    env = subprocess_env(data, COO_OPERATORS="telegram:1001", COO_MEMORY__SEMANTIC="false")
    command = [sys.executable, "-m", "tests.test_two_files", mode, str(plugin), str(data)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_connector_and_a_skill_from_their_own_files_work_end_to_end(tmp_path: Path) -> None:
    done = run_driver("run", write_plugin(tmp_path / "plugin"), tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["settings"] == {"url": seen["hook_url"], "secret_set": True}  # read from COO_BELL__*
    assert seen["command_card"].startswith("Ring the bell?\n\nTimes: 3\nFor: stand-up")
    assert seen["rings"] == [{"times": 3, "note": "stand-up"}, {"times": 2, "note": "lunch"}]
    assert seen["signatures_ok"] == [True, True] and seen["distinct_keys"] == 2
    assert "1. [chime] Ring for lunch" in seen["plan_card"]
    assert seen["skill_card"].startswith("Ring the bell?") and "by task t1 Ring for lunch (chime)" in seen["skill_card"]
    assert seen["skill_prompt_seen"] and seen["skill_tools"] == ["finish_task", "ring_bell"]
    assert seen["goal"] == "done" and seen["task"] == {"status": "done", "summary": "rang for lunch", "artifacts": []}


def test_a_skill_naming_a_tool_that_does_not_exist_stops_the_start_with_one_line(tmp_path: Path) -> None:
    done = run_driver("start", write_plugin(tmp_path / "plugin", tool="ring_bel"), tmp_path / "data")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "skill 'chime' names a tool that does not exist: 'ring_bel'; did you mean 'ring_bell'?" in lines[0]


def test_no_file_of_the_product_names_the_bell_or_the_chime() -> None:
    product = [
        p for folder in ("bot", "graph", "memory", "connectors", "prompts") for p in (ROOT / folder).rglob("*.*")
    ]
    assert product and not [p for p in product if p.suffix in (".py", ".txt") and "ring_bell" in p.read_text()]
    assert not [p for p in product if p.stem in ("bell", "chime", "skill_chime")]


def _extend(plugin: Path) -> None:
    """What dropping the files into the product's folders would do, without touching them."""
    import connectors
    import graph.goals.skills
    import prompts

    connectors.__path__.append(str(plugin / "connectors"))
    graph.goals.skills.__path__.append(str(plugin / "skills"))
    prompts.__path__.append(str(plugin / "prompts"))


async def _run(data: Path) -> dict[str, Any]:
    from bot.messages import OutboundMessage
    from bot.runtime import open_runtime
    from tests.conftest import RecordingChannel, llm_settings, make_settings, operator_message
    from tests.fakes.openai_api import FakeOpenAI, Scripted
    from tests.fakes.polling import eventually, eventually_async
    from tests.fakes.webhook_server import WebhookServer
    from tests.graph.goals.goal_helpers import Brain, finish, met_verdict, plan, task, text_of

    def ring_then_finish(body: dict[str, Any]) -> Scripted:
        text = text_of(body)
        if "): sent" in text:
            return finish("rang for lunch")
        if "a card was shown to the operator" in text:
            return Scripted(content="waiting for the operator")
        return Scripted(tool_calls=[("ring_bell", {"times": 2, "note": "lunch", "reason": "it is lunch time"})])

    def card(chan: RecordingChannel, title: str) -> OutboundMessage | None:
        shown = [m for m in chan.sent if m.buttons and m.edit_message_id is None and m.text.startswith(title)]
        return shown[-1] if shown else None

    def approve(message: OutboundMessage | None) -> Any:
        assert message is not None
        return operator_message("", kind="callback", data=next(b.data for b in message.buttons if b.label == "Approve"))

    brain = Brain(
        plans=[plan(task("t1", "chime", "Ring for lunch"), criteria="the bell rang")],
        skills={"Ring for lunch": ring_then_finish},
        verdict=met_verdict("The bell rang.", "the bell rang"),
    )
    seen: dict[str, Any] = {}
    async with FakeOpenAI() as fake, WebhookServer() as hook:
        fake.responder = brain
        os.environ.update({"COO_BELL__URL": hook.url, "COO_BELL__SECRET": hook.secret})
        tasks = {"poll_s": 0.02, "progress_interval_s": 0, "retry_base_s": 0, "lease_s": 30}
        settings = make_settings(data, llm=llm_settings(fake), tasks=tasks, outbox={"poll_s": 0.02})
        bell = settings.bell  # type: ignore[attr-defined]
        seen["settings"] = {"url": bell.url, "secret_set": bell.secret is not None}
        seen["hook_url"] = hook.url
        async with open_runtime(settings, console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            await rt.dispatcher.handle(operator_message("/bell 3 | stand-up", kind="command"))
            shown = card(chan, "Ring the bell?")
            seen["command_card"] = shown.text if shown else ""
            await rt.dispatcher.handle(approve(shown))
            await hook.wait_received(1)
            await rt.dispatcher.handle(operator_message("/goal ring the bell for lunch", kind="command"))
            planned = card(chan, "Start this plan?")
            seen["plan_card"] = planned.text if planned else ""
            await rt.dispatcher.handle(approve(planned))
            await eventually(lambda: len([m for m in chan.sent if m.text.startswith("Ring the bell?")]) >= 2)
            asked = card(chan, "Ring the bell?")
            seen["skill_card"] = asked.text if asked else ""
            await rt.dispatcher.handle(approve(asked))
            await hook.wait_received(2)

            async def finished() -> bool:
                goals = await rt.tasks.goals()
                return bool(goals) and goals[0].status in ("done", "failed")

            await eventually_async(finished, timeout=20, what="the goal to finish")
            goal = (await rt.tasks.goals())[0]
            seen["goal"] = goal.status
            seen["task"] = (await rt.tasks.tasks(goal.id))[0].result
    skill_requests = [r for r in fake.chat_requests if "You ring the office bell" in text_of(r)]
    seen["skill_prompt_seen"] = bool(skill_requests)
    seen["skill_tools"] = (
        sorted(t["function"]["name"] for t in skill_requests[0].get("tools", [])) if skill_requests else []
    )
    seen["rings"] = [{"times": r.body["times"], "note": r.body["note"]} for r in hook.received]
    seen["signatures_ok"] = [r.signature_ok for r in hook.received]
    seen["distinct_keys"] = len({r.key for r in hook.received})
    return seen


def _main(mode: str, plugin: Path, data: Path) -> int:
    _extend(plugin)
    if mode == "start":
        from bot.cli import main

        return main(["run"])
    print(json.dumps(asyncio.run(_run(data))))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])))
