"""/remember, /recall, /forget and /profile."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.commands.router import CommandRouter
from bot.messages import InboundMessage
from graph.errors import UserFacingError
from memory.db import Database, utcnow
from memory.mail import MailStore
from memory.notes import NoteLedger, StoredNote, new_ref
from memory.profile import FIELDS, Profile, ProfileError, ProfileStore
from memory.semantic.chat_notes import said
from memory.semantic.contracts import EmbeddingRefused, MemoryUnavailable
from memory.semantic.notes import EmbedderUnavailable, Note, check_notes
from prompts.messages import (
    MEMORY_BUDGET_KEPT,
    MEMORY_BUDGET_RECALL,
    MEMORY_EMBEDDER_KEPT,
    MEMORY_UNAVAILABLE,
    MESSAGE_FORGOTTEN,
    PROFILE_RESTORE_DROPPED,
    PROFILE_RESTORE_NONE,
    PROFILE_RESTORE_WAITING,
    PROFILE_RISK_MOVED,
)

if TYPE_CHECKING:
    from memory.semantic.api import Memory

log = logging.getLogger(__name__)

# A chat message's memory ref: its ``message.in`` event id.
_MESSAGE_REF = re.compile(r"msg-([0-9]{1,18})")
_MAIL_REF = re.compile(r"mail-([0-9]{1,18})")
PROFILE_USAGE = (
    "Usage: /profile | /profile set <field> <value> | /profile clear <field> | /profile restore [drop]  (fields: "
    + ", ".join(FIELDS)
    + ")"
)


def register_memory_commands(
    router: CommandRouter,
    db: Database,
    memory: Memory | None,
    ledger: NoteLedger,
    profile: ProfileStore,
    scope: str,
    repair: Callable[[], None],
    later: Callable[[Note], None] | None = None,
    mail: MailStore | None = None,
) -> None:
    """Add /remember, /recall, /forget (when semantic memory is on) and /profile.

    ``repair`` is called when the memory index fails (it starts a rebuild in the background).
    ``later`` queues a note kept in the ledger but not indexed (the budget refused its embedding, the
    embedder or the index failed), to be indexed once that passes (the background ingestion, which retries).
    """

    def unavailable(what: str, exc: MemoryUnavailable) -> UserFacingError:
        repair()
        return UserFacingError(MEMORY_UNAVAILABLE.format(what=what, reason=exc))

    async def remember(inbound: InboundMessage, args: str) -> str:
        assert memory is not None
        text = args.strip()
        if not text:
            raise UserFacingError("Usage: /remember <what to remember>")
        note = StoredNote(new_ref(), scope, f"remember:{inbound.channel}", text, utcnow())
        indexed = Note(text=text, source=note.source, at=note.at, scope=scope, ref=note.ref)
        try:
            check_notes([indexed])
        except ValueError as exc:
            raise UserFacingError(f"I could not remember that: {exc}") from None
        # The ledger is the canonical copy, written first: whatever happens to the index now (a failure,
        # a crash), the note is kept, and indexed later (the ingestion's retries, the next start, a rebuild).
        await kept(inbound, note)
        try:
            await memory.add(indexed)
        except EmbeddingRefused:
            queue(indexed)
            raise UserFacingError(MEMORY_BUDGET_KEPT.format(ref=note.ref)) from None
        except EmbedderUnavailable:
            log.warning("/remember: the embedder failed; %s kept, to be indexed later", note.ref, exc_info=True)
            queue(indexed)
            raise UserFacingError(MEMORY_EMBEDDER_KEPT.format(ref=note.ref)) from None
        except MemoryUnavailable as exc:
            queue(indexed)
            raise unavailable(f"Kept as {note.ref}, but it", exc) from None
        return f"Remembered ({note.ref})."

    def queue(note: Note) -> None:
        if later is not None:
            later(note)

    async def kept(inbound: InboundMessage, note: StoredNote) -> None:
        await ledger.add(note)
        await db.append_event("memory.remembered", inbound.sender, {"ref": note.ref}, session=inbound.session_key)

    async def recall(_: InboundMessage, args: str) -> str:
        assert memory is not None
        if not args.strip():
            raise UserFacingError("Usage: /recall <question or words>")
        try:
            hits = await memory.recall(args.strip(), k=5, scope=scope)
        except MemoryUnavailable as exc:
            raise unavailable("Memory", exc) from None
        except EmbeddingRefused:
            raise UserFacingError(MEMORY_BUDGET_RECALL) from None
        if not hits:
            return "Nothing in memory matches that."
        # A chat note carries its date and speaker in its text (for search); the line shows the date already.
        return "\n".join(f"{h.ref} [{h.at:%Y-%m-%d}] {said(h.text, h.source)[:300]}" for h in hits)

    async def forget(inbound: InboundMessage, args: str) -> str:
        assert memory is not None
        ref = args.strip()
        if not ref or " " in ref:
            raise UserFacingError("Usage: /forget <ref>  (the ref is shown by /remember and /recall)")
        try:
            removed = await memory.forget(ref=ref, scope=scope)
        except MemoryUnavailable as exc:
            raise unavailable("Memory", exc) from None
        removed += int(await ledger.remove(ref))
        message = _MESSAGE_REF.fullmatch(ref)
        redacted = message is not None and await db.redact_message(int(message[1]))
        received = _MAIL_REF.fullmatch(ref)  # a received email's text is blanked in the mail store too
        redacted |= received is not None and mail is not None and await mail.forget(int(received[1]))
        if not removed and not redacted:
            return f"Nothing stored under {ref}."
        await db.append_event("memory.forgotten", inbound.sender, {"ref": ref}, session=inbound.session_key)
        # A chat message lives on in the conversation's own history too; a remembered note never went there.
        return MESSAGE_FORGOTTEN.format(ref=ref) if message is not None else f"Forgotten: {ref}."

    async def profile_cmd(inbound: InboundMessage, args: str) -> str:
        words = args.split(None, 2)
        if words[:1] == ["restore"]:
            return await restore_profile(profile, inbound.sender, words[1:])
        if not words:
            rendered = (await profile.get()).render()
            shown = ("Profile:\n" + rendered) if rendered else "The profile is empty. " + PROFILE_USAGE
            return shown + await held_profile(profile)
        if len(words) >= 2 and words[1].lower() == "risk" and words[0] in ("set", "clear"):
            raise UserFacingError(PROFILE_RISK_MOVED)
        try:
            if words[0] == "set" and len(words) == 3:
                await profile.set(words[1], words[2], inbound.sender)
            elif words[0] == "clear" and len(words) == 2:
                await profile.set(words[1], "", inbound.sender)
            else:
                raise UserFacingError(PROFILE_USAGE)
        except ProfileError as exc:
            raise UserFacingError(f"{exc}. {PROFILE_USAGE}") from None
        return "Profile:\n" + ((await profile.get()).render() or "(empty)")

    if memory is not None:
        router.add("remember", "Remember something: /remember Acme pays net 30", remember, private=True)
        router.add("recall", "Search memory: /recall Acme payment terms", recall, private=True)
        router.add("forget", "Forget a remembered note: /forget <ref>", forget)
    router.add("profile", "Show or set the business profile", profile_cmd, confidential=True)


async def held_profile(profile: ProfileStore) -> str:
    """What a restored backup would set, when some is waiting for the operator (else empty)."""
    held = await profile.restored()
    if not held:
        return ""
    return "\n\n" + PROFILE_RESTORE_WAITING.format(fields=Profile(held).render())


async def restore_profile(profile: ProfileStore, operator: str, words: list[str]) -> str:
    """``/profile restore``: put a restored backup's profile in effect; ``/profile restore drop``: discard it."""
    if not await profile.restored():
        return PROFILE_RESTORE_NONE
    if words == ["drop"]:
        await profile.drop_restored(operator)
        return PROFILE_RESTORE_DROPPED
    if words:
        raise UserFacingError(PROFILE_USAGE)
    return "Profile:\n" + (await profile.confirm_restored(operator)).render()
