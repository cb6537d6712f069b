"""The console channel: cards shown with numbered choices and answered by number, word or /approve ID,
with the same checks as a button press (I1); and `coo chat` as a real process driven through stdin."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bot.channels.console import ConsoleChannel
from bot.messages import Button, InboundMessage, OutboundMessage
from bot.running import Runtime
from bot.runtime import open_runtime
from tests.conftest import RecordingChannel, make_settings, subprocess_env
from tests.fakes.coo_process import start_coo
from tests.fakes.polling import eventually
from tests.fakes.smtp_server import SMTPServer
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.terminal import Terminal

UP, RIGHT, LEFT = b"\x1b[A", b"\x1b[C", b"\x1b[D"
CARD = OutboundMessage(
    "console",
    "local",
    "Send this email?",
    buttons=(Button("Approve", "ap:abc:n1"), Button("Edit", "ed:abc:n1"), Button("Reject", "rj:abc:n1")),
)


async def _ignore(_: InboundMessage) -> None:
    return None


async def test_a_card_is_numbered_and_its_number_or_word_is_a_press() -> None:
    out = io.StringIO()
    console = ConsoleChannel(_ignore, io.StringIO(), out)
    assert await console.send(OutboundMessage("console", "local", "hello")) == ["c1"]
    assert await console.send(CARD) == ["c2"]
    assert "[1] Approve\n     [2] Edit\n     [3] Reject\n     (type 1-3 or approve/edit/reject)" in out.getvalue()
    pressed = console.translate("1")
    assert (pressed.kind, pressed.callback_data, pressed.sender, pressed.chat_id) == (
        "callback",
        "ap:abc:n1",
        "console:local",
        "local",
    )
    await console.send(CARD)
    assert console.translate(" REJECT ").callback_data == "rj:abc:n1"
    await console.send(CARD)
    assert console.translate("Edit").callback_data == "ed:abc:n1"


async def test_choices_close_after_other_input_and_when_the_card_is_decided() -> None:
    console = ConsoleChannel(_ignore, io.StringIO(), io.StringIO())
    assert console.translate("1").kind == "message"  # no card: a number is just text
    await console.send(CARD)
    assert console.translate("4").kind == "message"  # not one of the choices, and it closes them
    assert console.translate("1").kind == "message"
    (card_id,) = await console.send(CARD)
    assert console.translate("/approve abc").kind == "command"
    (card_id,) = await console.send(CARD)
    assert await console.send(OutboundMessage("console", "local", "Approved", edit_message_id=card_id)) == [card_id]
    assert console.translate("1").kind == "message"  # the card was decided: its buttons are gone
    # an updated card with new buttons (e.g. Void on a sent invoice) offers those
    await console.send(
        OutboundMessage("console", "local", "Sent", buttons=(Button("Void", "cp:x:y"),), edit_message_id=card_id)
    )
    assert console.translate("void").callback_data == "cp:x:y"


@asynccontextmanager
async def console_runtime(
    tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[Runtime, ConsoleChannel, io.StringIO]]:
    out = io.StringIO()
    settings = make_settings(tmp_path, outbox={"poll_s": 0.05, "backoff_base_s": 0.02}, **overrides)
    async with open_runtime(
        settings,
        console=True,
        console_input=io.StringIO(),  # lines go through translate(), as the reader's do
        console_output=out,
    ) as rt:
        assert rt.console is not None
        yield rt, rt.console, out


async def type_line(rt: Runtime, console: ConsoleChannel, text: str) -> None:
    await rt.dispatcher.handle(console.translate(text))


async def test_console_answers_cards_of_every_kind_with_the_checks_of_a_press(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with FakeStripe() as stripe:
            extra = {
                "smtp": smtp.settings(),
                "stripe": {"api_key": stripe.api_key, "api_base_url": stripe.api_base_url},
            }
            async with console_runtime(tmp_path, **extra) as (rt, console, out):
                await type_line(rt, console, "/email ana@example.org Hi | Hello Ana")
                await type_line(rt, console, "approve")
                await smtp.wait_delivered(1)
                await eventually(lambda: "coo> Sent at" in out.getvalue(), what="the email card updated")
                # an invoice: Edit by number, a correction, then the new card approved by its id
                await type_line(rt, console, "/invoice ana@example.org 100 | Consulting")
                await type_line(rt, console, "2")
                assert "Send the corrected invoice as lines" in out.getvalue()
                await type_line(rt, console, "amount=250")
                new = await rt.approvals.store.list_approvals("pending")
                assert len(new) == 1 and "Total: 250.00 USD" in out.getvalue()
                await type_line(rt, console, "something else")  # closes the card's choices
                await type_line(rt, console, "1")  # now just text (offline: no model answers it)
                assert stripe.requests == []
                await type_line(rt, console, f"/approve {new[0].id}")
                await eventually(lambda: len(stripe.sent) == 1, what="the invoice sent")
                await eventually(lambda: "[1] Void" in out.getvalue(), what="the sent card with Void")
                await type_line(rt, console, f"/approve {new[0].id}")  # decided: the same answer as a press
    # the runtime is closed (the press handled, the outbox stopped): a second execution would be counted below
    assert len(smtp.delivered) == 1 and len(stripe.invoices) == 1
    assert next(iter(stripe.invoices.values()))["total"] == 25000
    assert "Already decided: approved by console:local" in out.getvalue()


async def test_a_card_shown_only_in_another_chat_cannot_be_approved_from_the_console(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with console_runtime(tmp_path, smtp=smtp.settings()) as (rt, console, out):
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            await rt.dispatcher.handle(
                InboundMessage("rec", "1001", "telegram:1001", "/email bo@example.org Hi | Hello Bo", kind="command")
            )
            (row,) = await rt.approvals.store.list_approvals("pending")
            await type_line(rt, console, f"/approve {row.id}")  # never shown here: ignored like a foreign press
            still = await rt.approvals.store.get(row.id)
            assert still is not None and still.state == "pending"  # not approved: nothing can be sent
            assert smtp.delivered == []
            foreign = await rt.db.events(kind="approval.foreign")
            assert len(foreign) == 1
            await type_line(rt, console, "/pending")  # shown here now: the same card can be answered here
            await type_line(rt, console, "1")
            await smtp.wait_delivered(1)
    assert len(smtp.delivered) == 1 and smtp.delivered[0].rcpt_tos == ["bo@example.org"]


async def test_coo_chat_through_stdin_sends_exactly_one_email(tmp_path: Path) -> None:
    """`coo chat` as its own process: `/email …` then `1` typed on stdin -> one email at a real SMTP server."""
    with SMTPServer() as smtp:
        env = subprocess_env(
            tmp_path / "data",
            COO_SMTP__HOST="127.0.0.1",
            COO_SMTP__PORT=str(smtp.port),
            COO_SMTP__FROM_ADDR="me@example.org",
            COO_SMTP__SECURITY="none",
            COO_OUTBOX__POLL_S="0.1",
        )
        proc = await start_coo(
            "chat",
            env=env,
            cwd=str(tmp_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None
        screen = ""

        async def read_until(marker: str) -> None:
            nonlocal screen
            assert proc.stdout is not None
            while marker not in screen:
                chunk = await asyncio.wait_for(proc.stdout.read(4096), 30)
                assert chunk, f"coo chat ended before {marker!r}:\n{screen}"
                screen += chunk.decode()

        try:
            await read_until("you> ")
            proc.stdin.write(b"/email ana@example.org Proposal | Hi Ana, the proposal is ready.\n")
            await read_until("[1] Approve")
            assert smtp.delivered == []
            proc.stdin.write(b"1\n")
            await smtp.wait_delivered(1, timeout=30)
            await read_until("coo> Sent at")
            proc.stdin.write(b"1\n")  # the card is decided: a second "1" is plain text, not a second press
            proc.stdin.close()
            _, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert len(smtp.delivered) == 1 and smtp.delivered[0].body == "Hi Ana, the proposal is ready."
    assert "Approved by console:local" in screen


async def test_piped_input_gets_a_fresh_prompt_after_a_line_that_came_by_itself() -> None:
    """A late line (a card updated by the outbox) while the prompt waits is followed by the prompt again;
    a reply to a typed line is followed by exactly one prompt."""
    read_end, write_end = os.pipe()
    out = io.StringIO()
    console: ConsoleChannel

    async def reply(message: InboundMessage) -> None:
        await console.send(OutboundMessage("console", "local", f"you said {message.text}"))

    with os.fdopen(read_end, encoding="utf-8") as piped:
        console = ConsoleChannel(reply, piped, out)
        await console.start()
        try:
            assert out.getvalue() == "you> "
            await console.send(OutboundMessage("console", "local", "Sent at 10:04"))
            assert out.getvalue() == "you> \ncoo> Sent at 10:04\nyou> "
            os.write(write_end, b"hello\n")
            await eventually(lambda: out.getvalue().count("you> ") == 3, what="the prompt after the reply")
            assert out.getvalue().endswith("\ncoo> you said hello\nyou> ")
        finally:
            os.close(write_end)
            await console.closed.wait()
            await console.stop()


def test_on_a_terminal_arrows_edit_the_line_and_bring_back_the_last_one(tmp_path: Path) -> None:
    with Terminal(["chat"], subprocess_env(tmp_path / "data"), tmp_path) as terminal:
        terminal.read_until("you>")
        terminal.type(b"/statu" + LEFT + RIGHT + b"s\r")  # typed, moved back and forth, finished
        terminal.read_until("coo> channels: console")
        # Keys typed between two prompts are the terminal's, not the line editor's (it echoes them raw):
        # each key is typed once the next prompt is there, as a person would.
        terminal.read_until("you>")
        terminal.type(UP + b"\r")  # the line before, again
        terminal.read_until("coo> channels: console")
        terminal.read_until("you>")
        terminal.type(b"\x03")  # Ctrl-C ends the console like Ctrl-D
        assert terminal.wait() == 0, terminal.screen
    assert "^[[" not in terminal.screen
    assert "Unknown command" not in terminal.screen and "not a command" not in terminal.screen


def test_on_a_terminal_a_late_line_is_followed_by_a_fresh_prompt(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        env = subprocess_env(
            tmp_path / "data",
            COO_SMTP__HOST="127.0.0.1",
            COO_SMTP__PORT=str(smtp.port),
            COO_SMTP__FROM_ADDR="me@example.org",
            COO_SMTP__SECURITY="none",
            COO_OUTBOX__POLL_S="0.1",
        )
        with Terminal(["chat"], env, tmp_path) as terminal:
            terminal.read_until("you>")
            terminal.type(b"/email ana@example.org Proposal | Hi Ana, the proposal is ready.\r")
            terminal.read_until("[1] Approve")
            terminal.type(b"1\r")
            terminal.read_until("coo> Sent at")  # printed by the outbox, after the reply to "1"
            terminal.read_until("you>")  # and the prompt is there again to type on
            terminal.type(b"\x04")
            assert terminal.wait() == 0, terminal.screen
    assert len(smtp.delivered) == 1


def test_sigterm_at_a_terminal_prompt_stops_and_gives_the_terminal_back(tmp_path: Path) -> None:
    with Terminal(["chat"], subprocess_env(tmp_path / "data"), tmp_path) as terminal:
        terminal.read_until("you>")
        terminal.type(b"half a line")
        terminal.read_until("half a line")
        assert not terminal.cooked()  # the line editor reads key by key
        terminal.proc.send_signal(signal.SIGTERM)
        assert terminal.wait() == 0, terminal.screen
        assert terminal.cooked()
