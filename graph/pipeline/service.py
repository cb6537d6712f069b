"""The pipeline's logic: contacts found by name, stages moved (by the operator, or to customer by a payment),
next steps set, and the views: ``/pipeline``'s overview and the short summary the planner and skills read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from graph.days import named_day
from graph.errors import UserFacingError
from memory.db import Database, utcnow
from memory.pipeline import STAGES, NextStep, PipelineStore, Stage, StageMove
from memory.records import Contact, Record, Records
from prompts import messages

# What the summary for the model lists at most (names per stage, due steps).
SUMMARY_NAMES = 12
SUMMARY_STEPS = 10
OVERVIEW_STEPS = 30


@dataclass(frozen=True)
class Parsed:
    """One ``/pipeline`` request: the contact, and a stage or a next step (or neither: show the contact)."""

    contact: str
    stage: Stage | None = None
    when: str = ""
    what: str = ""
    done: bool = False


def parse_request(args: str) -> Parsed:
    """``<contact> <stage>``, ``<contact> next <when> | <what>``, ``<contact> next done`` or ``<contact>``.
    UserFacingError with the one thing wrong."""
    head, bar, what = args.partition("|")
    words = head.split()
    lowered = [w.lower() for w in words]
    if "next" in lowered[1:]:
        at = len(lowered) - 1 - lowered[::-1].index("next")
        contact, rest = " ".join(words[:at]), lowered[at + 1 :]
        if rest == ["done"] and not bar:
            return Parsed(contact, done=True)
        if len(rest) != 1:
            raise UserFacingError(messages.PIPELINE_USAGE)
        if not what.strip():
            raise UserFacingError(messages.PIPELINE_NEEDS_WHAT)
        return Parsed(contact, when=rest[0], what=what.strip())
    if bar:
        raise UserFacingError(messages.PIPELINE_USAGE)
    if len(words) >= 2 and lowered[-1] in STAGES:
        return Parsed(" ".join(words[:-1]), stage=lowered[-1])  # type: ignore[arg-type]
    return Parsed(" ".join(words))


class Pipeline:
    """Stages and next steps of contacts, in the operator's zone."""

    def __init__(
        self, store: PipelineStore, records: Records, timezone: str, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._store = store
        self._records = records
        self._tz = ZoneInfo(timezone)
        self._clock = clock

    @property
    def store(self) -> PipelineStore:
        """The store behind it."""
        return self._store

    def today(self) -> date:
        """Today in the operator's zone."""
        return self._clock().astimezone(self._tz).date()

    async def contact(self, query: str) -> Record:
        """The one contact ``query`` names: its exact name, else every word beginning a word of its name,
        company or address. UserFacingError when none or several match."""
        wanted = " ".join(query.split()).casefold()
        if not wanted:
            raise UserFacingError(messages.PIPELINE_USAGE)
        contacts = [r for r in await self._records.all("contact") if isinstance(r.data, Contact)]
        exact = [r for r in contacts if r.data.name.casefold() == wanted]  # type: ignore[attr-defined]
        found = exact or [r for r in contacts if _named(wanted, r.data)]  # type: ignore[arg-type]
        if not found:
            raise UserFacingError(messages.PIPELINE_NO_CONTACT.format(query=query.strip()))
        if len(found) > 1:
            names = ", ".join(_label(r.data) for r in found[:5])  # type: ignore[arg-type]
            raise UserFacingError(messages.PIPELINE_AMBIGUOUS.format(query=query.strip(), names=names))
        return found[0]

    async def move(self, record: Record, stage: Stage, actor: str, reason: str = "") -> StageMove | None:
        """Put a contact in a stage (None when it was there already)."""
        return await self._store.move(record.id, stage, actor, reason)

    async def paid(self, contact_id: str, number: str) -> StageMove | None:
        """A contact paid an invoice: it is a customer now (None when it was one already or is no contact)."""
        if await self._records.get("contact", contact_id) is None:
            return None
        reason = messages.PIPELINE_PAID_REASON.format(number=number)
        return await self._store.move(contact_id, "customer", "stripe", reason)

    async def handle(self, args: str, actor: str) -> str:
        """One ``/pipeline <...>`` request with arguments; the reply."""
        request = parse_request(args)
        record = await self._requested(request)
        name = _label(record.data)  # type: ignore[arg-type]
        if request.stage is not None:
            before = (await self._store.stages()).get(record.id)
            if await self.move(record, request.stage, actor, "set by the operator") is None:
                return messages.PIPELINE_SAME.format(name=name, stage=request.stage)
            old = before.stage if before else "(none)"
            return messages.PIPELINE_MOVED.format(name=name, old=old, stage=request.stage)
        if request.done:
            cleared = await self._store.clear_next(record.id, actor)
            return (messages.PIPELINE_NEXT_DONE if cleared else messages.PIPELINE_NO_NEXT).format(name=name)
        if request.when:
            today = self.today()
            due = named_day(request.when, today)
            if due is None:
                raise UserFacingError(messages.PIPELINE_BAD_WHEN.format(when=request.when))
            if due < today:
                raise UserFacingError(messages.PIPELINE_PAST.format(due=due, today=today))
            try:
                step = await self._store.set_next(record.id, request.what, due, actor)
            except ValueError as exc:
                raise UserFacingError(str(exc)) from None
            return messages.PIPELINE_NEXT_SET.format(name=name, what=step.what, due=_day(step.due))
        return await self.describe(record)

    async def _requested(self, request: Parsed) -> Record:
        """The request's contact; when none matches but all its words save the last do, that last word was
        meant as a stage and is not one (the clearer error)."""
        try:
            return await self.contact(request.contact)
        except UserFacingError:
            head, _, last = request.contact.rpartition(" ")
            if request.stage is None and not request.when and not request.done and head.strip():
                try:
                    await self.contact(head)
                except UserFacingError:
                    pass
                else:
                    raise UserFacingError(messages.PIPELINE_BAD_STAGE.format(word=last)) from None
            raise

    async def describe(self, record: Record) -> str:
        """One contact: its stage history and next step."""
        name = _label(record.data)  # type: ignore[arg-type]
        moves = await self._store.history(record.id)
        lines = [f"{name}: {moves[-1].stage if moves else '(no stage)'}"]
        for move in moves[-10:]:
            why = f" ({move.reason})" if move.reason else ""
            lines.append(f"- {move.at.astimezone(self._tz):%Y-%m-%d %H:%M} {move.stage}, by {move.actor}{why}")
        step = (await self._store.next_steps()).get(record.id)
        no_step = messages.PIPELINE_NO_NEXT.format(name=name)
        lines.append(f"Next: {step.what}, due {_day(step.due)}" if step else no_step)
        return "\n".join(lines)

    async def overview(self) -> str:
        """``/pipeline``: the count per stage, then the next steps due today or earlier (no model)."""
        stages = await self._store.stages()
        steps = await self._store.next_steps()
        if not stages and not steps:
            return messages.PIPELINE_EMPTY
        names = await self._names()
        counts = {stage: sum(m.stage == stage for m in stages.values()) for stage in STAGES}
        lines = [messages.PIPELINE_HEAD, ", ".join(f"{stage} {counts[stage]}" for stage in STAGES)]
        today = self.today()
        due = [s for s in steps.values() if s.due <= today and s.contact_id in names]
        lines.append(messages.PIPELINE_DUE_HEAD.format(today=_day(today)) if due else messages.PIPELINE_NONE_DUE)
        for step in due[:OVERVIEW_STEPS]:
            lines.append("- " + _step_line(step, names[step.contact_id], stages.get(step.contact_id), today))
        later = sum(s.due > today for s in steps.values())
        if later:
            lines.append(messages.PIPELINE_LATER.format(count=messages.plural(later, "next step")))
        return "\n".join(lines)

    async def digest_lines(self) -> list[str]:
        """The digest's part: the next steps due today or earlier (nothing when none is)."""
        today = self.today()
        due = [s for s in (await self._store.next_steps()).values() if s.due <= today]
        if not due:
            return []
        names, stages = await self._names(), await self._store.stages()
        shown = [
            "- " + _step_line(s, names[s.contact_id], stages.get(s.contact_id), today)
            for s in due[:OVERVIEW_STEPS]
            if s.contact_id in names
        ]
        return [messages.PIPELINE_DIGEST_HEAD, *shown] if shown else []

    async def summary(self) -> str:
        """A short plain-text summary for the planner and the skills (quoted as data there): each stage with
        its count and contacts (name and address), and the due next steps. Empty when nothing is staged."""
        stages = await self._store.stages()
        if not stages:
            return ""
        names = await self._names()
        steps = await self._store.next_steps()
        today = self.today()
        lines = []
        for stage in STAGES:
            members = sorted((c for c, m in stages.items() if m.stage == stage and c in names), key=names.__getitem__)
            if not members:
                continue
            shown = "; ".join(names[c] for c in members[:SUMMARY_NAMES])
            more = f"; and {len(members) - SUMMARY_NAMES} more" if len(members) > SUMMARY_NAMES else ""
            lines.append(f"{stage} ({len(members)}): {shown}{more}")
        due = [s for s in steps.values() if s.contact_id in names]
        for step in due[:SUMMARY_STEPS]:
            lines.append("next step: " + _step_line(step, names[step.contact_id], stages.get(step.contact_id), today))
        return "\n".join(lines)

    async def _names(self) -> dict[str, str]:
        """Each live contact's label, by id (a deleted contact drops out of every view)."""
        return {r.id: _label(r.data, address=True) for r in await self._records.all("contact")}  # type: ignore[arg-type]


async def pipeline_summary(
    db: Database, records: Records, timezone: str, clock: Callable[[], datetime] = utcnow
) -> str:
    """The summary, straight from the database (empty on a data directory that has no pipeline yet)."""
    store = PipelineStore(db)
    if not await store.ready():
        return ""
    return await Pipeline(store, records, timezone, clock).summary()


def _step_line(step: NextStep, name: str, move: StageMove | None, today: date) -> str:
    late = (today - step.due).days
    when = "today" if late == 0 else f"{late} days late" if late > 0 else f"due {_day(step.due)}"
    stage = f" [{move.stage}]" if move else ""
    return f"{name}{stage}: {step.what} ({when})"


def _day(day: date) -> str:
    return f"{day:%a %Y-%m-%d}"


def _label(contact: Contact, address: bool = False) -> str:
    name = contact.name + (f" ({contact.company})" if contact.company else "")
    return name + (f" <{contact.emails[0]}>" if address and contact.emails else "")


def _named(query: str, contact: Contact) -> bool:
    words = " ".join([contact.name, contact.company, *contact.emails]).casefold().replace("@", " ").split()
    return all(any(word.startswith(part) for word in words) for part in query.split())
