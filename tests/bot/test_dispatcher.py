"""The core path: access check first, dedupe, commands, coordinator, replies; restart and faults."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.dispatcher import GENERIC_ERROR, Dispatcher, Handlers
from bot.messages import InboundMessage, OutboundMessage
from bot.runtime import open_runtime
from prompts.messages import REFUSAL
from tests.conftest import RecordingChannel, llm_settings, make_settings, user_turns
from tests.fakes.openai_api import FakeOpenAI


def msg(
    text: str,
    sender: str = "telegram:1001",
    chat: str = "1001",
    key: str | None = None,
    kind: str = "message",
) -> InboundMessage:
    return InboundMessage(
        channel="rec",
        chat_id=chat,
        sender=sender,
        text=text,
        kind=kind,  # type: ignore[arg-type]
        update_key=key,
    )


async def test_allowed_message_reaches_model_and_reply_comes_back(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.reply("Hello, operator.")
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(msg("hi", key="rec:1"))
        assert [m.text for m in chan.sent] == ["Hello, operator."]
        assert chan.typing_count == 1
        calls = await rt.ledger.calls()
    assert len(fake_llm.chat_requests) == 1
    sent_messages = fake_llm.chat_requests[0]["messages"]
    assert sent_messages[0]["role"] == "system" and sent_messages[-1] == {"role": "user", "content": "hi"}
    assert calls[0].prompt_tokens > 0 and calls[0].outcome == "ok" and not calls[0].estimated


async def test_stranger_refused_on_every_update_kind_without_model_call(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        for i, kind in enumerate(["message", "edit", "command", "callback", "other"]):
            await rt.dispatcher.handle(
                msg(
                    "/status" if kind == "command" else "hi",
                    sender="telegram:666",
                    chat="666",
                    key=f"rec:{i}",
                    kind=kind,
                )
            )
        denied = await rt.db.events(kind="access.deny")
        claimed = await rt.db.pending_updates()
    assert fake_llm.requests == []
    assert [m.text for m in chan.sent] == [REFUSAL]  # one short refusal, not one per update
    assert len(denied) == 5 and {e.actor for e in denied} == {"telegram:666"}
    assert claimed == []


async def test_duplicate_update_key_gives_one_reply(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await asyncio.gather(*(rt.dispatcher.handle(msg("once", key="rec:42")) for _ in range(3)))
        await rt.dispatcher.handle(msg("once", key="rec:42"))
    assert len(fake_llm.chat_requests) == 1
    assert [m.text for m in chan.sent] == ["echo: once"]


async def test_conversation_survives_restart(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        rt.dispatcher.attach(RecordingChannel("rec"))
        await rt.dispatcher.handle(msg("my client is Acme", key="rec:1"))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(msg("who is my client?", key="rec:2"))
        history = await rt.coordinator.history("rec:1001")
    second = fake_llm.chat_requests[1]["messages"]
    assert user_turns(fake_llm.chat_requests[1]) == ["my client is Acme", "who is my client?"]
    assert {"role": "assistant", "content": "echo: my client is Acme"} in second
    assert len([m for m in history if m["role"] == "user"]) == 2


async def test_sessions_are_separate_threads(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        rt.dispatcher.attach(RecordingChannel("rec"))
        await rt.dispatcher.handle(msg("secret of chat A", chat="A", key="rec:1"))
        await rt.dispatcher.handle(msg("hello from B", chat="B", key="rec:2"))
    contents = [m["content"] for m in fake_llm.chat_requests[1]["messages"]]
    assert "secret of chat A" not in contents


async def test_tool_call_runs_and_result_goes_back_to_model(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.tool_call("current_time", {})
    fake_llm.tool_call("no_such_tool", {})
    fake_llm.reply("It is late.")
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm), timezone="Europe/Lisbon")
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(msg("what time is it?", key="rec:1"))
        tool_events = await rt.db.events(kind="tool.call")
    assert [m.text for m in chan.sent] == ["It is late."]
    second = fake_llm.chat_requests[1]["messages"]
    assert second[-1]["role"] == "tool" and ("WET" in second[-1]["content"] or "WEST" in second[-1]["content"])
    third = fake_llm.chat_requests[2]["messages"]
    assert "no tool named 'no_such_tool'; the tools are current_time, " in third[-1]["content"]
    assert [e.payload["ok"] for e in tool_events] == [True, False]
    assert "tools" in fake_llm.chat_requests[0]


async def test_tool_rounds_are_bounded(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    for _ in range(10):
        fake_llm.tool_call("current_time", {})
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm, max_tool_rounds=2))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(msg("loop", key="rec:1"))
    # two rounds with tools offered, then one final call without tools
    assert len(fake_llm.chat_requests) == 3 and "tools" not in fake_llm.chat_requests[2]
    assert len(chan.sent) == 1


async def test_unknown_command_is_user_facing(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(msg("/nope", key="rec:1", kind="command"))
        await rt.dispatcher.handle(msg("/help@coo_bot", key="rec:2", kind="command"))
    assert chan.sent[0].text == "Unknown command /nope. Try /help."
    assert "/status" in chan.sent[1].text
    assert fake_llm.requests == []


async def test_internal_error_is_logged_once_and_generic_reply(
    tmp_path: Path, fake_llm: FakeOpenAI, captured_logs
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)

        async def broken(_inbound: InboundMessage, _args: str) -> str:
            raise RuntimeError("database on fire")

        rt.commands.add("broken", "always fails", broken)
        await rt.dispatcher.handle(msg("/broken", key="rec:1", kind="command"))
        pending = await rt.db.pending_updates()
    assert [m.text for m in chan.sent] == [GENERIC_ERROR]
    errors = [r for r in captured_logs.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "rec:1001" in errors[0].getMessage()
    assert pending == []


class _NotInChannel(RecordingChannel):
    """A channel that cannot post into this chat (Slack: not_in_channel; Telegram: the bot was blocked)."""

    async def send(self, message: OutboundMessage) -> list[str]:
        raise RuntimeError("not_in_channel")


async def test_a_user_facing_error_that_cannot_be_delivered_still_finishes_the_update(
    tmp_path: Path, captured_logs
) -> None:  # type: ignore[no-untyped-def]
    async with open_runtime(make_settings(tmp_path), console=False) as rt:
        rt.dispatcher.attach(_NotInChannel("rec"))
        await rt.dispatcher.handle(msg("/nosuchcommand", key="rec:1", kind="command"))  # before: raised
        pending = await rt.db.pending_updates()
    assert pending == []  # before: replayed (and redone) on every start
    errors = [r for r in captured_logs.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "rec:1 " in errors[0].getMessage() and "rec:1001" in errors[0].getMessage()
    assert errors[0].exc_info is not None and "not_in_channel" in str(errors[0].exc_info[1])


async def test_unfinished_update_is_replayed_after_restart(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        # what a crash between "claimed" and "answered" leaves behind
        from bot.dispatcher import inbound_to_json

        inbound = msg("still there?", key="rec:9")
        logged = {"text": inbound.text, "kind": inbound.kind}
        assert await rt.db.claim_update("rec:9", inbound.session_key, inbound_to_json(inbound), inbound.sender, logged)
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        assert await rt.dispatcher.replay_pending() == 1
        assert await rt.dispatcher.replay_pending() == 0
        await rt.dispatcher.handle(inbound)  # a late redelivery is still a duplicate
    assert [m.text for m in chan.sent] == ["echo: still there?"]


async def test_checkpoint_pruning_keeps_the_conversation(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    import aiosqlite

    from memory.checkpoints import prune_checkpoints

    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        rt.dispatcher.attach(RecordingChannel("rec"))
        for i in range(12):  # a plain turn stores one checkpoint: enough of them to prune
            await rt.dispatcher.handle(msg(f"turn {i}", key=f"rec:{i}"))
    async with aiosqlite.connect(tmp_path / "checkpoints.sqlite") as conn:
        async with conn.execute("SELECT COUNT(*) FROM checkpoints") as cur:
            before = (await cur.fetchone())[0]  # type: ignore[index]
        removed = await prune_checkpoints(conn, keep_per_thread=3)
        async with conn.execute("SELECT COUNT(*) FROM checkpoints") as cur:
            after = (await cur.fetchone())[0]  # type: ignore[index]
    assert before > 10 and after == 3 and removed >= before - 3
    async with open_runtime(settings, console=False) as rt:  # the conversation is still whole
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(msg("and now?", key="rec:99"))
    users = user_turns(fake_llm.chat_requests[-1])
    assert users == [f"turn {i}" for i in range(12)] + ["and now?"]


async def test_a_batch_is_stored_in_one_go_and_answered_in_order(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        batch = [
            msg("first", key="rec:1"),
            msg("let me in", sender="telegram:666", chat="666", key="rec:2"),
            msg("second", key="rec:3"),
            msg("first", key="rec:1"),  # the platform sent it twice
            msg("other chat", chat="-5", key="rec:4"),
        ]
        tasks = await rt.dispatcher.accept_many(batch)
        stored = await rt.db.events(kind="message.in")  # all of it, before any turn ran
        quiet = asyncio.ensure_future(rt.dispatcher.quiet())  # what background work waits for
        turns = [t for t in tasks if t is not None]
        first, _ = await asyncio.wait([quiet, *turns], return_when=asyncio.FIRST_COMPLETED)
        assert quiet not in first  # not quiet while a turn is in flight
        await asyncio.gather(*turns)
        await asyncio.wait_for(quiet, 5)
        claimed = await rt.db.pending_updates()
    assert tasks[3] is None and all(t is not None for i, t in enumerate(tasks) if i != 3)
    assert [e.payload["text"] for e in stored] == ["first", "second", "other chat"]  # the stranger's is not kept
    mine = [m.text for m in chan.sent if m.chat_id == "1001"]
    assert mine == ["echo: first", "echo: second"]  # one conversation's turns in order
    assert [m.text for m in chan.sent if m.chat_id == "666"] == [REFUSAL]
    assert claimed == []


async def test_updates_accepted_before_the_core_is_ready_are_stored_then_handled_in_order(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.messenger.attach(chan)
        early = Dispatcher(rt.db, rt.guard, rt.commands, rt.messenger)  # what `coo run` polls with at first
        tasks = await early.accept_many([msg("one", key="rec:1"), msg("two", key="rec:2")])
        stored = await rt.db.pending_updates()
        await asyncio.sleep(0)
        assert len(stored) == 2 and chan.sent == [] and fake_llm.chat_requests == []  # stored, not handled yet
        early.bind(Handlers(rt.coordinator, rt.approval_ui, rt.control, buttons={}))
        await asyncio.gather(*(t for t in tasks if t is not None))
    assert [m.text for m in chan.sent] == ["echo: one", "echo: two"]


async def test_a_stop_before_the_core_is_ready_keeps_what_was_stored_for_the_next_start(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        early = Dispatcher(rt.db, rt.guard, rt.commands, rt.messenger)
        [task] = await early.accept_many([msg("hello", key="rec:7")])
        await early.drain(15.0)  # nothing could handle it: returns at once
        assert task is not None and task.cancelled()
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        assert await rt.dispatcher.replay_pending() == 1
    assert [m.text for m in chan.sent] == ["echo: hello"]


async def test_an_update_whose_access_check_fails_is_refused_alone_and_the_batch_goes_on(
    tmp_path: Path, fake_llm: FakeOpenAI, captured_logs
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.db.connection.execute("DROP TABLE pairing_codes")  # a stranger's /pair cannot be checked now
        batch = [
            msg("first", key="rec:1"),
            msg("/pair AAAAAAAA", sender="telegram:666", chat="666", key="rec:2", kind="command"),
            msg("second", key="rec:3"),
        ]
        tasks = await rt.dispatcher.accept_many(batch)  # before: raised, so nothing was stored (and it came again)
        refused = await rt.db.events(kind="access.error")  # on record before the platform is told it arrived
        stored = await rt.db.events(kind="message.in")
        await asyncio.gather(*(t for t in tasks if t is not None))
        pending = await rt.db.pending_updates()
    assert all(t is not None for t in tasks)
    assert [(e.actor, e.payload["kind"]) for e in refused] == [("telegram:666", "command")]
    assert [e.payload["text"] for e in stored] == ["first", "second"]  # the refused one is not kept
    assert [m.text for m in chan.sent if m.chat_id == "1001"] == ["echo: first", "echo: second"]
    assert [m.text for m in chan.sent if m.chat_id == "666"] == [GENERIC_ERROR]
    errors = [r for r in captured_logs.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "rec:2" in errors[0].getMessage() and "rec:666" in errors[0].getMessage()
    assert pending == [] and rt.guard.tries_left("telegram:666") == 4  # a try that erred still counts (fail closed)
