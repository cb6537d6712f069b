"""An outcome the outbox cannot save (a full or locked disk right after the email went out): the card
shows what happened and that it was not saved, instead of "Sending…" until the next restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.runtime import open_runtime
from tests.conftest import RecordingChannel, make_settings, operator_message
from tests.fakes.polling import eventually
from tests.fakes.smtp_server import SMTPServer


async def test_a_card_shows_an_outcome_that_could_not_be_saved(tmp_path: Path) -> None:
    with SMTPServer(default_mode="hold") as smtp:
        settings = make_settings(
            tmp_path, smtp=smtp.settings(), outbox={"poll_s": 0.05}, sqlite={"busy_timeout_ms": 100}
        )
        async with open_runtime(settings, console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            await rt.dispatcher.handle(operator_message("/email ana@example.org Hi | Hello", kind="command"))
            card = next(m for m in chan.sent if m.buttons)
            approve = next(b.data for b in card.buttons if b.label == "Approve")
            await rt.dispatcher.handle(operator_message("", kind="callback", data=approve))
            await smtp.wait_delivered(1)  # the email is in; its "250" waits
            writer = sqlite3.connect(tmp_path / "coo.sqlite", isolation_level=None)
            writer.execute("BEGIN EXCLUSIVE")  # from now on nothing can be written (as with a full disk)
            try:
                smtp.release()

                def unsaved() -> list[str]:
                    return [m.text for m in chan.sent if m.edit_message_id and "could not be saved" in m.text]

                await eventually(unsaved, timeout=10, what="the card showing the unsaved outcome")
            finally:
                writer.execute("ROLLBACK")
                writer.close()
            with sqlite3.connect(tmp_path / "coo.sqlite") as conn:
                [(state,)] = conn.execute("SELECT state FROM outbox").fetchall()
    assert state == "running"  # not saved: a restart calls it unknown, the card already told the truth
    [text] = unsaved()
    assert "Sent " in text and "Sending…" not in text
    assert len(smtp.delivered) == 1
