"""Reading the inbox over IMAP (imapclient, run off the event loop): settings and intake.

Read-only on the server: folders are opened with EXAMINE and bodies fetched with BODY.PEEK, so no flag
changes. Each message is stored with its folder's cursor in one transaction before the next one is
fetched; after a crash or a reconnect intake resumes after the last stored UID, and a UIDVALIDITY change
starts the folder over (stored messages dedupe by Message-ID, so nothing is doubled). Where the server
offers IDLE, intake waits on the first folder with IDLE; elsewhere it polls every ``poll_s`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from connectors.mail_parse import parse_mail
from connectors.settings import IMAPSettings
from memory.errors import InternalError
from memory.mail import Location, MailRecord, MailStore

log = logging.getLogger(__name__)
FETCH_BATCH = 25
IDLE_SLICE_S = 0.5
IDLE_RENEW_S = 25 * 60.0
RETRY_MAX_S = 300.0
_BODY = b"BODY[]"
SEEN = b"\\Seen"


class MoveUnsupported(InternalError, IMAPClientError):
    """The server has no MOVE: moving would take COPY + delete, which a crash could double; nothing is moved."""


T = TypeVar("T")


class Session:
    """One logged-in IMAP connection. Blocking: every method runs on a worker thread."""

    def __init__(self, settings: IMAPSettings, stop: threading.Event, nudge: threading.Event | None = None) -> None:
        s = settings
        context = ssl.create_default_context() if s.security != "none" else None
        self._client = IMAPClient(
            s.host or "", port=s.port, ssl=s.security == "tls", ssl_context=context, timeout=s.timeout_s
        )
        self._stop = stop
        self._nudge = nudge or threading.Event()
        try:
            if context is not None and s.security == "starttls":
                self._client.starttls(context)
            password = s.password.get_secret_value() if s.password else ""
            self._client.login(s.username or "", password)
        except BaseException:
            with contextlib.suppress(IMAPClientError, OSError):
                self._client.shutdown()
            raise
        self.idle = bool(self._client.has_capability("IDLE"))
        self.uidnext = 0

    def examine(self, folder: str) -> int:
        """Open ``folder`` read-only; returns its UIDVALIDITY."""
        info = self._client.select_folder(folder, readonly=True)
        self.uidnext = int(info.get(b"UIDNEXT", 0))
        return int(info[b"UIDVALIDITY"])

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above ``last_uid`` in the open folder, ascending (``n:*`` always matches the last one)."""
        return sorted(uid for uid in self._client.search(["UID", f"{last_uid + 1}:*"]) if uid > last_uid)

    def fetch(self, uids: list[int]) -> dict[int, bytes]:
        """The raw bytes of ``uids`` (BODY.PEEK: the \\Seen flag stays as it is)."""
        answer = self._client.fetch(uids, ["BODY.PEEK[]"])
        return {int(uid): bytes(data.get(_BODY, b"")) for uid, data in answer.items() if _BODY in data}

    def wait(self, timeout_s: float) -> bool:
        """IDLE on the open folder until the server reports a change, ``timeout_s`` passes or intake stops.
        True when something arrived."""
        self._client.idle()
        try:
            waited = 0.0
            while waited < timeout_s and not self._stop.is_set() and not self._nudge.is_set():
                if self._client.idle_check(timeout=IDLE_SLICE_S):
                    return True
                waited += IDLE_SLICE_S
            return False
        finally:
            self._client.idle_done()

    def after_triage(self, folder: str, validity: int, uids: list[int], move_to: str | None) -> None:
        """Mark ``uids`` of ``folder`` seen, or move them to ``move_to``: only those still there, so doing it again
        after a crash (done on the server, not yet recorded) changes nothing. A renumbered folder is left alone:
        its messages are read again under their new UIDs and handled then."""
        info = self._client.select_folder(folder)
        if int(info[b"UIDVALIDITY"]) != validity or not uids:
            return
        present = self._client.search(["UID", ",".join(str(u) for u in uids)])
        if not present:
            return
        if move_to is None:
            self._client.add_flags(present, [SEEN])
            return
        if not self._client.has_capability("MOVE"):
            raise MoveUnsupported("the server has no MOVE")
        if not self._client.folder_exists(move_to):
            self._client.create_folder(move_to)
        self._client.move(present, move_to)  # one command: the message is in one folder or the other, never lost

    def folders(self) -> list[str]:
        """Every folder's name on the server."""
        return [str(name) for _flags, _delimiter, name in self._client.list_folders()]

    def close(self) -> None:
        """Log out (best effort: the connection may already be gone)."""
        with contextlib.suppress(IMAPClientError, OSError):
            self._client.logout()


class MailIntake:
    """Keeps ``store`` up to date with the configured folders; ``on_new`` is called after new mail is stored."""

    def __init__(self, settings: IMAPSettings, store: MailStore, on_new: Callable[[], None] = lambda: None) -> None:
        self._settings = settings
        self._store = store
        self._on_new = on_new
        self._stop = threading.Event()
        self._nudge = threading.Event()
        self._told_no_move = False
        self._failures = 0
        self._uidnext: dict[str, int] = {}
        # One thread for the connection: a command never overlaps another (logout waits for IDLE to end).
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="imap")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def run_forever(self) -> None:
        """Sync, then wait (IDLE or poll), forever; connection problems are retried with backoff."""
        try:
            while True:
                try:
                    await self._connected_loop()
                except (TimeoutError, IMAPClientError, OSError) as exc:
                    self._failures += 1
                    delay = min(RETRY_MAX_S, self._settings.poll_s, 2.0**self._failures)
                    log.warning("inbox: %s (%s); retrying in %.1f s", _where(self._settings), _reason(exc), delay)
                    await asyncio.sleep(delay)
        finally:
            self._stop.set()
            self._thread.shutdown(wait=False)

    def nudge(self) -> None:
        """Triage finished: leave IDLE early to do the opt-in action after triage now."""
        if self._settings.after_triage != "none":
            self._nudge.set()

    async def _connected_loop(self) -> None:
        session = await self._call(Session, self._settings, self._stop, self._nudge)
        self._failures = 0
        try:
            while True:
                self._nudge.clear()
                await self._sync(session)
                await self._after_triage(session)
                if not session.idle:
                    await asyncio.sleep(self._settings.poll_s)
                elif await self._caught_up(session):
                    await self._call(session.wait, min(self._settings.poll_s, IDLE_RENEW_S))
        except asyncio.CancelledError:
            self._stop.set()
            raise
        finally:
            await asyncio.shield(self._call(session.close))

    async def _caught_up(self, session: Session) -> bool:
        """Open the first folder afresh, so that IDLE reports whatever arrives after this point; False when
        mail came during the sync (UIDNEXT moved since the sync opened the folder): sync again first."""
        folder = self._settings.folders[0]
        seen = self._uidnext.get(folder)
        await self._call(session.examine, folder)
        return session.uidnext == seen

    async def sync_once(self) -> int:
        """Connect, store everything new in every folder, disconnect; returns how many new messages."""
        session = await self._call(Session, self._settings, self._stop)
        try:
            return await self._sync(session)
        finally:
            await self._call(session.close)

    async def after_triage_once(self) -> int:
        """Connect, do the action after triage for what is due, disconnect; returns how many locations."""
        session = await self._call(Session, self._settings, self._stop)
        try:
            return await self._after_triage(session)
        finally:
            await self._call(session.close)

    async def _after_triage(self, session: Session) -> int:
        """The opt-in action after triage (``seen`` or ``move:<folder>``) on what triage finished; recorded after
        the server did it, and safe to do again when a crash came in between."""
        if self._settings.after_triage == "none":
            return 0
        handled = 0
        for folder in self._settings.folders:
            due = [where for where, _ in await self._store.after_triage_due(folder)]
            for validity in sorted({w.uidvalidity for w in due}):
                batch = [w for w in due if w.uidvalidity == validity]
                uids = [w.uid for w in batch]
                try:
                    await self._call(session.after_triage, folder, validity, uids, self._settings.move_to)
                except MoveUnsupported:
                    if not self._told_no_move:
                        log.warning("inbox: %s has no MOVE; triaged mail stays where it is", _where(self._settings))
                        self._told_no_move = True
                    return handled
                await self._store.mark_after_done(batch)
                handled += len(batch)
        return handled

    async def _sync(self, session: Session) -> int:
        new = 0
        for folder in self._settings.folders:
            new += await self._sync_folder(session, folder)
        return new

    async def _sync_folder(self, session: Session, folder: str) -> int:
        validity = await self._call(session.examine, folder)
        self._uidnext[folder] = session.uidnext
        cursor = await self._store.cursor(folder)
        if cursor is not None and cursor[0] != validity:
            log.warning("inbox: %s was renumbered (UIDVALIDITY changed); reading it again", folder)
            await self._store.reset_cursor(folder, validity)
            cursor = None
        uids = await self._call(session.uids_after, cursor[1] if cursor else 0)
        new = 0
        for start in range(0, len(uids), FETCH_BATCH):
            batch = uids[start : start + FETCH_BATCH]
            raws = await self._call(session.fetch, batch)
            records = await asyncio.to_thread(_parse_all, raws)
            # A UID missing from the answer was expunged between SEARCH and FETCH.
            found = [(records[uid], Location(folder, validity, uid)) for uid in batch if uid in records]
            new += sum(is_new for _, is_new in await self._store.store_many(found))
            if new:
                self._on_new()
        return new


def probe(settings: IMAPSettings) -> tuple[bool, str]:
    """``coo doctor``'s check (blocking): connect, log in, list the folders, say whether IDLE is offered.
    The detail names the server and user, never the password or the server's own words (they may echo it)."""
    where = f"{settings.username} at {_where(settings)} ({settings.security})"
    try:
        session = Session(settings, threading.Event())
    except LoginError:
        return False, f"login refused for {where}: check COO_IMAP__USERNAME and COO_IMAP__PASSWORD"
    except (TimeoutError, IMAPClientError, OSError) as exc:
        return False, f"cannot reach {_where(settings)} ({settings.security}): {_reason(exc)}"
    try:
        found = session.folders()
    except (TimeoutError, IMAPClientError, OSError) as exc:
        return False, f"logged in as {where}, but listing folders failed: {_reason(exc)}"
    finally:
        session.close()
    missing = [f for f in settings.folders if f not in found]
    if missing:
        return False, f"logged in as {where}; no folder {', '.join(missing)} (COO_IMAP__FOLDERS); found: {_few(found)}"
    idle = "IDLE supported" if session.idle else f"no IDLE: polling every {settings.poll_s:g} s"
    return True, f"logged in as {where}; reading {', '.join(settings.folders)} of {len(found)} folders; {idle}"


def _few(names: list[str]) -> str:
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def _parse_all(raws: dict[int, bytes]) -> dict[int, MailRecord]:
    return {uid: parse_mail(raw) for uid, raw in raws.items()}


def _where(settings: IMAPSettings) -> str:
    return f"{settings.host}:{settings.port}"


def _reason(exc: BaseException) -> str:
    """A short reason that never repeats the server's text verbatim (it may echo the login)."""
    return type(exc).__name__
