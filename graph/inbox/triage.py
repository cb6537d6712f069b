"""Triage of stored mail: rules first, then (when a model is configured) the cheap model, under the budget
in the workflow ``inbox``. The model sees the email only as quoted data naming its origin, gets no tools,
and can only choose among fixed classes; anything else it writes is ignored (the rules' verdict stays).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ValidationError, field_validator

from graph.conversation.context import as_data
from graph.errors import ModelUnavailable
from graph.inbox.rules import CLASSES, URGENCIES, Verdict, by_rules
from graph.models.llm import LLMClient
from graph.spend.budget import BudgetExceeded
from memory.mail import MailStore, StoredMail
from memory.records import Contact, Records
from prompts import load_prompt

log = logging.getLogger(__name__)
WORKFLOW = "inbox"
MAX_PROMPT_CHARS = 6_000
BATCH = 200


class _ModelVerdict(BaseModel):
    """What the model may say: a class and an urgency from fixed lists, and one short line."""

    mail_class: str
    urgency: str
    summary: str

    @field_validator("mail_class")
    @classmethod
    def _class(cls, value: str) -> str:
        if value not in CLASSES:
            raise ValueError("unknown class")
        return value

    @field_validator("urgency")
    @classmethod
    def _urgency(cls, value: str) -> str:
        if value not in URGENCIES:
            raise ValueError("unknown urgency")
        return value

    @field_validator("summary")
    @classmethod
    def _summary(cls, value: str) -> str:
        return " ".join(value.split())[:200]


class Triage:
    """Classifies what intake stored; ``on_triaged`` runs after each batch (to send due notices)."""

    def __init__(
        self,
        store: MailStore,
        records: Records,
        llm: LLMClient | None = None,
        model: str | None = None,
        on_triaged: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._store = store
        self._records = records
        self._llm = llm
        self._model = model
        self._on_triaged = on_triaged
        self.wake = asyncio.Event()

    async def run_forever(self) -> None:
        """Triage whatever is new each time intake signals (``wake``)."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while await self.run_pending():
                pass

    async def run_pending(self) -> int:
        """Triage up to one batch of untriaged messages; returns how many."""
        pending = await self._store.untriaged(BATCH)
        if not pending:
            return 0
        contacts = await self._contact_addresses()
        for mail in pending:
            known = mail.record.from_addr in contacts
            verdict = await self.classify(mail, known)
            notify = known and verdict.urgency == "high" and verdict.needs_operator
            await self._store.set_triage(
                mail.id, verdict.mail_class, verdict.urgency, verdict.summary, verdict.needs_operator, notify
            )
        if self._on_triaged is not None:
            await self._on_triaged()
        return len(pending)

    async def classify(self, mail: StoredMail, known_contact: bool) -> Verdict:
        """The rules' verdict, refined by the model when one is configured and the rules are not sure."""
        record = mail.record
        ours = await self._store.sent_for([record.in_reply_to, *reversed(record.references)])
        verdict = by_rules(record, known_contact, ours is not None)
        if verdict.final or self._llm is None or not self._llm.configured:
            return verdict
        try:
            return self._merge(verdict, await self._ask(mail, verdict))
        except (BudgetExceeded, ModelUnavailable) as exc:
            log.info("inbox triage by rules only (%s)", type(exc).__name__)
        except (ValidationError, ValueError) as exc:
            log.warning("inbox triage: the model's answer was not usable (%s); the rules' verdict stands", exc)
        return verdict

    async def _ask(self, mail: StoredMail, rules: Verdict) -> _ModelVerdict:
        assert self._llm is not None
        r = mail.record
        hints = f"class {rules.mail_class}, urgency {rules.urgency}"
        text = f"From: {r.from_name} <{r.from_addr}>\nSubject: {r.subject}\nDate: {r.sent_at}\n\n{r.body}"
        origin = f"email from {r.from_addr} (untrusted)"
        data = f'<data source="{as_data(origin)}">\n{as_data(text[:MAX_PROMPT_CHARS])}\n</data>'
        messages = [
            {"role": "system", "content": load_prompt("inbox_triage").replace("{hints}", hints)},
            {"role": "user", "content": data},
        ]
        reply = await self._llm.chat(messages, workflow=WORKFLOW, model=self._model)
        answer = json.loads(_json_part(reply.content))
        if not isinstance(answer, dict):
            raise ValueError("not a JSON object")
        return _ModelVerdict(
            mail_class=str(answer.get("class", "")),
            urgency=str(answer.get("urgency", "")),
            summary=str(answer.get("summary", "")),
        )

    @staticmethod
    def _merge(rules: Verdict, model: _ModelVerdict) -> Verdict:
        # The rules' suspicion is never lifted by the model (the email could have talked it round).
        mail_class = "suspicious" if rules.mail_class == "suspicious" else model.mail_class
        return Verdict(mail_class, model.urgency, model.summary or rules.summary)

    async def _contact_addresses(self) -> frozenset[str]:
        found: set[str] = set()
        for record in await self._records.all("contact"):
            if isinstance(record.data, Contact):
                found.update(record.data.emails)
        return frozenset(found)


def _json_part(text: str) -> str:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the answer")
    return text[start : end + 1]
