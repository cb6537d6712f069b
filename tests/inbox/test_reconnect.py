"""Intake in the background: new mail through IDLE, a server that goes away and comes back, a wrong password."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from pathlib import Path

import pytest

from connectors.imap import MailIntake
from memory.db import open_database
from memory.mail import MailStore
from tests.fakes.dovecot import PASSWORD, Dovecot
from tests.fakes.polling import eventually, eventually_async
from tests.inbox.conftest import imap_settings
from tests.inbox.mails import mail


async def test_intake_reconnects_after_the_server_drops_and_misses_nothing(tmp_path: Path, dovecot: Dovecot) -> None:
    async with open_database(tmp_path) as db:
        store = MailStore(db)
        await store.setup()
        woken = asyncio.Event()
        # poll_s is long: the first message after start is seen through IDLE, not by polling.
        intake = MailIntake(imap_settings(dovecot, poll_s=30.0), store, on_new=woken.set)
        task = asyncio.create_task(intake.run_forever())
        try:
            await eventually(dovecot.idling, timeout=20, what="the intake in IDLE")  # mail sooner could wait the poll
            await asyncio.to_thread(dovecot.append, mail("One", message_id="<r1@acme.test>"))
            await eventually_async(lambda: _count_is(store, 1), timeout=20, what="the first message")
            # on_new is called after the message is stored: wait for it, not only for the row
            await asyncio.wait_for(woken.wait(), 20)
            await asyncio.to_thread(dovecot.halt)
            await asyncio.to_thread(dovecot.relaunch)
            await asyncio.to_thread(dovecot.append, mail("Two", message_id="<r2@acme.test>"))
            await asyncio.to_thread(dovecot.append, mail("One", message_id="<r1@acme.test>"))  # delivered twice
            await eventually_async(lambda: _count_is(store, 2), timeout=40, what="the message after the drop")
            cursor = await store.cursor("INBOX")
            assert cursor is not None and cursor[1] == 3  # the copy delivered twice was seen, and stored once
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_refused_login_is_logged_without_the_password_and_retried(
    tmp_path: Path, dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_database(tmp_path) as db:
        store = MailStore(db)
        await store.setup()
        wrong = PASSWORD + "-wrong"
        intake = MailIntake(imap_settings(dovecot, password=wrong, poll_s=0.2), store)
        with caplog.at_level(logging.WARNING):
            task = asyncio.create_task(intake.run_forever())
            try:
                await eventually_async(lambda: _warned(caplog, 2), timeout=20, what="two refused logins")
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        lines = [r.getMessage() for r in caplog.records if r.name == "connectors.imap"]
        assert lines[0] == f"inbox: 127.0.0.1:{dovecot.port} (LoginError); retrying in 0.2 s"
        assert not any(wrong in line or PASSWORD in line for line in caplog.messages)
        assert await store.count() == 0


async def _count_is(store: MailStore, n: int) -> bool:
    return await store.count() == n


async def _warned(caplog: pytest.LogCaptureFixture, n: int) -> bool:
    return sum(r.name == "connectors.imap" for r in caplog.records) >= n


async def test_an_idle_intake_on_an_empty_mailbox_waits_quietly(tmp_path: Path, dovecot: Dovecot) -> None:
    async with open_database(tmp_path) as db:
        store = MailStore(db)
        await store.setup()
        task = asyncio.create_task(MailIntake(imap_settings(dovecot, poll_s=30.0), store).run_forever())
        try:
            await asyncio.sleep(2.0)  # observing that nothing happens: the client must be in IDLE, not looping
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def sent_bytes() -> list[int]:
        return [int(m) for m in re.findall(r"Disconnected: .* in=(\d+)", dovecot.log())]

    await eventually_async(lambda: _true(bool(sent_bytes())), timeout=10, what="dovecot to log the session")
    # Login, one EXAMINE + SEARCH, the check before IDLE, IDLE and DONE, LOGOUT: a few hundred bytes.
    assert sent_bytes()[0] < 1000, dovecot.log()


async def _true(value: bool) -> bool:
    return value
