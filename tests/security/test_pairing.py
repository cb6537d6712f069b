"""I6 pairing: open only while nobody can use the bot or after `coo pair`; wrong codes lock out only their
sender; every operator hears who paired; `coo operators --remove` ends access at once."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import timedelta
from pathlib import Path

from bot.access import AccessGuard, Verdict
from bot.messages import InboundMessage
from bot.notices import notify_access_changes
from bot.runtime import open_runtime
from memory.db import open_database
from memory.operators import OperatorStore
from prompts.messages import PAIR_CLOSED, PAIR_FAILED, PAIRED, PAIRING_REOPENED, REFUSAL
from tests.conftest import ROOT, ManualClock, RecordingChannel, llm_settings, make_settings, subprocess_env
from tests.fakes.coo_process import run_coo_blocking
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegram

_n = iter(range(10**6))


def msg(text: str, user: str) -> InboundMessage:
    """A message in ``user``'s private chat on the recording channel."""
    kind = "command" if text.startswith("/") else "message"
    return InboundMessage("rec", user, f"telegram:{user}", text, kind=kind, update_key=f"p:{next(_n)}")  # type: ignore[arg-type]


def texts(chan: RecordingChannel, chat: str) -> list[str]:
    return [m.text for m in chan.sent if m.chat_id == chat]


async def test_start_code_only_while_nobody_can_use_the_bot(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    async with FakeTelegram("1:T") as tg:
        telegram = {"token": "1:T", "api_base_url": tg.api_root, "poll_timeout_s": 0.5}
        settings = make_settings(tmp_path, operators="", telegram=telegram, llm=llm_settings(fake_llm))
        async with open_runtime(settings, console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            code = rt.pairing_code
            assert code is not None and len(code) == 8
            await rt.dispatcher.handle(msg(f"/pair {code.lower()}", "7"))
            await rt.dispatcher.handle(msg("now I'm in", "7"))
            await rt.dispatcher.handle(msg(f"/pair {code}", "8"))  # one use only
        assert texts(chan, "7") == [PAIRED, "echo: now I'm in"]
        assert texts(chan, "8") == [PAIR_CLOSED]
        # An operator exists now: a restart opens no code (before, every start printed a new one).
        async with open_runtime(settings, console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            assert rt.pairing_code is None and rt.guard.is_operator("telegram:7")
            await rt.dispatcher.handle(msg("/pair AAAAAAAA", "9"))
            await rt.dispatcher.handle(msg("hello?", "9"))
        assert texts(chan, "9") == [PAIR_CLOSED, REFUSAL]
    assert len(fake_llm.chat_requests) == 1


async def test_wrong_codes_lock_out_only_their_sender(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, operators="")
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        code = await rt.operators.open_pairing("cli", timedelta(minutes=15))
        for _ in range(6):
            await rt.dispatcher.handle(msg("/pair AAAAAAAA", "66"))  # a stranger guessing
        await rt.dispatcher.handle(msg(f"/pair {code}", "66"))  # even the right code: this sender is locked
        assert not rt.guard.is_operator("telegram:66")
        await rt.dispatcher.handle(msg(f"/pair {code}", "7"))  # the rightful operator is not locked out
        assert rt.guard.is_operator("telegram:7")
        failed = await rt.db.events(kind="access.pair_failed")
        locked = await rt.db.events(kind="access.pair_locked")
    # One reply to the guesser in the window (each guess was answered before), the rest counted and audited.
    assert texts(chan, "66") == [PAIR_FAILED.format(left=4)] and texts(chan, "7") == [PAIRED]
    assert len(failed) == 5 and len(locked) == 2


async def test_expired_code_pairs_nobody(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, operators="")
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        code = await rt.operators.open_pairing("cli", timedelta(seconds=-1))  # its time is up already
        await rt.dispatcher.handle(msg(f"/pair {code}", "7"))
    assert not rt.guard.is_operator("telegram:7") and texts(chan, "7") == [PAIR_CLOSED]


async def test_a_pair_code_with_a_lone_surrogate_is_a_wrong_code(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        store = OperatorStore(db)
        await store.setup()
        code = await store.open_pairing("cli", timedelta(minutes=15))
        guard = AccessGuard(frozenset(), store)
        verdict = await guard.check(msg("/pair AB\ud800CDEF", "66"))  # before: UnicodeEncodeError
        assert verdict is Verdict.PAIR_FAILED and guard.tries_left("telegram:66") == 4  # counted
        assert await guard.check(msg(f"/pair {code}", "7")) is Verdict.PAIRED  # the code is still good


async def test_wrong_codes_sent_at_once_are_all_counted(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        store = OperatorStore(db)
        await store.setup()
        guard = AccessGuard(frozenset(), store)
        closed = await asyncio.gather(*(guard.check(msg("/pair AAAAAAAA", "66")) for _ in range(3)))
        assert closed == [Verdict.PAIR_CLOSED] * 3 and guard.tries_left("telegram:66") == 5  # nothing to guess
        code = await store.open_pairing("cli", timedelta(minutes=15))
        tries = [msg(f"/pair WRONG{i:03d}", "66") for i in range(20)]  # e.g. webhook or Socket Mode requests
        verdicts = await asyncio.gather(*(guard.check(t) for t in tries))
        # before: all 20 were PAIR_FAILED (each read the count, awaited twice, then wrote count + 1)
        assert verdicts.count(Verdict.PAIR_FAILED) == 5 and verdicts.count(Verdict.PAIR_LOCKED) == 15
        assert guard.tries_left("telegram:66") == 0
        assert await guard.check(msg(f"/pair {code}", "66")) is Verdict.PAIR_LOCKED
        assert await guard.check(msg(f"/pair {code}", "7")) is Verdict.PAIRED  # only the guesser is locked


async def test_a_strangers_pair_code_with_a_lone_surrogate_does_not_wedge_polling(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    async with FakeTelegram("123:ABC", username="CooBot") as tg:
        telegram = {"token": "123:ABC", "api_base_url": tg.api_root, "poll_timeout_s": 0.5}
        settings = make_settings(tmp_path, llm=llm_settings(fake_llm), telegram=telegram)
        async with open_runtime(settings, console=False) as rt:
            await rt.operators.open_pairing("cli", timedelta(minutes=15))  # `coo pair`
            await tg.wait_for("getUpdates")
            tg.push_message(user_id=666, chat_id=666, text="/pair AB\ud800CDEF")  # one getUpdates batch
            last = tg.push_message(user_id=1001, chat_id=1001, text="hello, are you there?")
            # Before: the batch never got stored, the offset never moved and nobody was answered.
            await tg.wait_for(lambda c: c.method == "sendMessage", 2, timeout=30)
            await tg.wait_for(lambda c: c.method == "getUpdates" and c.params.get("offset") == last + 1, timeout=30)
    assert [c["text"] for c in tg.sent(666)] == [PAIR_FAILED.format(left=4)]
    assert [c["text"] for c in tg.sent(1001)] == ["echo: hello, are you there?"]


def coo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_coo_blocking(*args, env=env, cwd=ROOT)


async def test_coo_pair_tells_the_operators_and_coo_operators_removes_at_once(tmp_path: Path) -> None:
    env = subprocess_env(tmp_path, COO_OPERATORS="telegram:1001", COO_MEMORY__SEMANTIC="false")
    settings = make_settings(tmp_path, operators="telegram:1001")
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(msg("/status", "1001"))  # the operator's private chat becomes known
        await notify_access_changes(rt.db, rt.control, rt.messenger)  # what the scheduler runs every 10 s
        opened = await asyncio.to_thread(coo, env, "pair")
        assert opened.returncode == 0, opened.stderr
        code = opened.stdout.split("pairing code: ", 1)[1].split()[0]
        assert await notify_access_changes(rt.db, rt.control, rt.messenger) == 1
        await rt.dispatcher.handle(msg(f"/pair {code}", "7"))
        assert await notify_access_changes(rt.db, rt.control, rt.messenger) == 1
        listed = await asyncio.to_thread(coo, env, "operators")
        removed = await asyncio.to_thread(coo, env, "operators", "--remove", "telegram:7")
        await rt.dispatcher.handle(msg("still in?", "7"))
    notices = texts(chan, "1001")[1:]
    assert notices[0] == PAIRING_REOPENED.format(minutes=15)
    assert notices[1].startswith("telegram:7 paired as a new operator (code opened by cli)")
    assert "telegram:1001  (COO_OPERATORS)" in listed.stdout and "telegram:7  (paired" in listed.stdout
    assert removed.returncode == 0 and texts(chan, "7") == [PAIRED, REFUSAL]
    refused = await asyncio.to_thread(coo, env, "operators", "--remove", "telegram:1001")
    assert refused.returncode == 1 and "COO_OPERATORS" in refused.stdout


async def test_fifty_guesses_get_one_reply_per_stranger(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, operators="")
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.operators.open_pairing("cli", timedelta(minutes=15))
        for n in range(50):
            await rt.dispatcher.handle(msg(f"/pair GUESS{n:03d}", "66"))
        await rt.dispatcher.handle(msg("/pair AAAAAAAA", "67"))  # another stranger has a window of its own
    assert texts(chan, "66") == [PAIR_FAILED.format(left=4)] and texts(chan, "67") == [PAIR_FAILED.format(left=4)]


async def test_a_refusal_is_answered_again_once_the_window_is_over(tmp_path: Path) -> None:
    clock = ManualClock()
    async with open_database(tmp_path) as db:
        store = OperatorStore(db)
        await store.setup()
        guard = AccessGuard(frozenset(), store, clock=clock)
        assert await guard.check(msg("/pair AAAAAAAA", "66")) is Verdict.PAIR_CLOSED
        assert guard.answers("telegram:66", Verdict.PAIR_CLOSED)
        clock.advance(3599)
        assert not guard.answers("telegram:66", Verdict.PAIR_LOCKED)
        assert not guard.answers("telegram:66", Verdict.PAIR_FAILED)
        assert guard.answers("telegram:67", Verdict.PAIR_FAILED)  # per stranger
        assert guard.answers("telegram:66", Verdict.PAIRED)  # a pairing is always answered
        clock.advance(3601)
        assert guard.answers("telegram:66", Verdict.PAIR_CLOSED) and guard.answers("telegram:67", Verdict.PAIR_LOCKED)
