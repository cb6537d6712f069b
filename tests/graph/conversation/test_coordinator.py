"""What a turn stores and when: one checkpoint for a plain turn, the model's tool calls before any tool
runs, and a replay that goes on from there without asking the model again."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from bot.compose.model import open_checkpoints
from bot.runtime import open_runtime
from graph.contexts import Contexts
from graph.conversation.coordinator import Coordinator, TurnResult
from graph.errors import UserFacingError
from tests.conftest import RecordingChannel, llm_settings, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.fakes.smtp_server import SMTPServer
from tests.graph.parts import OPERATOR, goal_parts

SESSION = "rec:1001"


def checkpoints(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "checkpoints.sqlite") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM checkpoints WHERE thread_id = ?", (SESSION,)).fetchone()[0])


async def test_a_plain_turn_stores_one_checkpoint_that_holds_its_answer(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("what is on today?"))
        stored = await rt.coordinator.history(SESSION)
    assert [m.text for m in chan.sent] == ["echo: what is on today?"]
    assert checkpoints(tmp_path) == 1
    assert stored == [
        {"role": "user", "content": "what is on today?"},
        {"role": "assistant", "content": "echo: what is on today?"},
    ]


async def test_an_action_the_model_asked_for_is_stored_before_its_card_and_a_replay_proposes_it_once(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.tool_call("send_email", {"to": ["ana@example.org"], "subject": "S", "body": "B"})
    with SMTPServer() as smtp:
        await _crash_after_the_answer_then_replay(tmp_path, fake_llm, smtp)
    assert smtp.delivered == []  # nothing goes out before the tap (I1)


async def _crash_after_the_answer_then_replay(tmp_path: Path, fake_llm: FakeOpenAI, smtp: SMTPServer) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm), smtp=smtp.settings())
    message = operator_message("email Ana")
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        # What a crash right after the model's answer leaves: the first run, stopped before the tool step.
        values = await rt.coordinator.start_turn(SESSION, message.text, message.sender, message.update_key)
        stored = await rt.coordinator.history(SESSION)
        proposed_before = await rt.approvals.store.list_approvals()
    assert values["messages"][-1]["tool_calls"][0]["function"]["name"] == "send_email"
    assert stored[-1] == values["messages"][-1]  # the tool call is in the checkpoint
    assert proposed_before == []  # and no card was proposed yet
    with sqlite3.connect(tmp_path / "coo.sqlite") as conn:
        conn.execute(
            "INSERT INTO inbox (update_key, session, payload, status, received_at) VALUES (?, ?, ?, 'pending', ?)",
            (message.update_key, SESSION, _payload(message), message.received_at.isoformat()),
        )
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        assert await rt.dispatcher.replay_pending() == 1
        cards = await rt.approvals.store.list_approvals()
        waiting = await rt.coordinator.waiting_for(SESSION)
    assert len(fake_llm.chat_requests) == 1  # the model was not asked again
    assert len(cards) == 1 and cards[0].state == "pending" and waiting == cards[0].root_id
    assert "ana@example.org" in chan.sent[-1].text  # the card went out


def _payload(message: object) -> str:
    import json

    from bot.dispatcher import inbound_to_json

    return json.dumps(inbound_to_json(message))  # type: ignore[arg-type]


async def test_a_long_conversation_keeps_about_one_budget_of_messages_in_its_checkpoint(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm, context_budget=1500))
    async with open_runtime(settings, console=False) as rt:
        rt.dispatcher.attach(RecordingChannel("rec"))
        for i in range(40):
            await rt.dispatcher.handle(operator_message(f"note {i}: " + "the weather is mild today " * 8))
        stored = await rt.coordinator.history(SESSION)
    assert len(stored) < 40  # folded turns left the state (the event log keeps every message)
    assert stored[-2]["content"].startswith("note 39:")  # the newest turn is whole
    summary_calls = [r for r in fake_llm.chat_requests if "Update the running summary" in r["messages"][0]["content"]]
    assert summary_calls  # they were folded into the summary first


# -- the coordinator built on its own: real stores and checkpoints on SQLite, the fake model, no runtime ------------
@asynccontextmanager
async def coordinator_of(tmp_path: Path, fake: FakeOpenAI, smtp: SMTPServer) -> AsyncIterator[Coordinator]:
    async with goal_parts(tmp_path, fake, smtp=smtp.settings()) as parts, AsyncExitStack() as stack:
        saver, _ = await open_checkpoints(parts.settings, stack)
        stores = parts.stores
        contexts = Contexts(stores.db, "UTC", "USD", stores.records, stores.profile)
        coordinator = Coordinator(parts.llm, saver, parts.settings.llm, contexts, approvals=parts.approvals)
        stack.push_async_callback(coordinator.aclose)
        yield coordinator


async def test_a_turn_that_proposes_waits_on_its_card_and_a_decision_resumes_it_once(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.tool_call("send_email", {"to": ["ana@example.org"], "subject": "S", "body": "B", "reason": "asked"})
    with SMTPServer() as smtp:
        async with coordinator_of(tmp_path, fake_llm, smtp) as coordinator:
            proposed = await coordinator.respond(SESSION, "email Ana", OPERATOR, turn_key="t1")
            root = await coordinator.waiting_for(SESSION)
            resumed = await coordinator.resume(SESSION, str(root), {"decision": "rejected"}, OPERATOR)
            again = await coordinator.resume(SESSION, str(root), {"decision": "approved"}, OPERATOR)
            stored = await coordinator.history(SESSION)
    assert proposed.reply == "" and len(proposed.cards) == 1 and root is not None
    assert resumed.reply == "echo: email Ana"
    assert again == TurnResult("")  # a second decision for the same card resumes nothing
    assert len(fake_llm.chat_requests) == 2
    told = [m["content"] for m in stored if m["role"] == "tool"]
    assert told == ["The operator rejected the card. Nothing was done."]
    assert smtp.delivered == []


async def test_a_message_too_long_for_the_model_is_refused_in_one_line_and_nothing_is_stored(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    with SMTPServer() as smtp:
        async with coordinator_of(tmp_path, fake_llm, smtp) as coordinator:
            with pytest.raises(UserFacingError) as refused:
                await coordinator.respond(SESSION, "word " * 20_000, OPERATOR, turn_key="t1")
            stored = await coordinator.history(SESSION)
    assert "COO_LLM__CONTEXT_BUDGET" in refused.value.reason and "\n" not in refused.value.reason
    assert stored == [] and fake_llm.chat_requests == []


async def test_a_model_that_fails_gets_an_offline_answer_and_the_turn_is_kept(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.default = Scripted(status=400, error_message="the model refused the request")
    with SMTPServer() as smtp:
        async with coordinator_of(tmp_path, fake_llm, smtp) as coordinator:
            answer = await coordinator.respond(SESSION, "what is on today?", OPERATOR, turn_key="t1")
            stored = await coordinator.history(SESSION)
    assert "Offline mode" in answer.reply and answer.cards == ()
    assert answer.log_text is not None and "[offline reply quoting" in answer.log_text
    assert stored[0] == {"role": "user", "content": "what is on today?"}


async def test_two_coordinators_in_one_process_keep_their_conversations_apart(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    """The compiled graph is shared by every coordinator in a process; each keeps its own checkpoints."""
    first, second = tmp_path / "first", tmp_path / "second"
    async with (
        open_runtime(make_settings(first, llm=llm_settings(fake_llm)), console=False) as one,
        open_runtime(make_settings(second, llm=llm_settings(fake_llm)), console=False) as two,
    ):
        for rt in (one, two):
            rt.dispatcher.attach(RecordingChannel("rec"))
        await one.dispatcher.handle(operator_message("only in the first"))
        await two.dispatcher.handle(operator_message("only in the second"))
        histories = [await rt.coordinator.history(SESSION) for rt in (one, two)]
    assert [[m["content"] for m in history] for history in histories] == [
        ["only in the first", "echo: only in the first"],
        ["only in the second", "echo: only in the second"],
    ]
    assert (checkpoints(first), checkpoints(second)) == (1, 1)
