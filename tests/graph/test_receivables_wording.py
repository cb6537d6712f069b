"""The operator's reminder wording (``/profile set reminders ...``): it opens every reminder with its placeholders
filled, the tone of the invoice's age follows it, nothing else in it is read as a template, and only the
operator can set it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from graph.receivables.cadence import reminder_email
from memory.db import open_database
from memory.profile import ProfileError, ProfileStore
from tests.graph.test_receivables_cadence import DUE, invoice

WORDING = "Hello {customer}! Nova Studio about {number}: {amount}, due {due}, {days} days, {url}."


@pytest.mark.parametrize(
    ("days", "tone"),
    [
        (-3, "A friendly reminder that invoice INV-0003"),
        (0, "is due today (2026-12-20)"),
        (3, "Could you pay it at your earliest convenience?"),
        (14, "Please pay it this week"),
    ],
)
def test_the_wording_opens_each_reminder_and_the_tone_still_follows_the_age(days: int, tone: str) -> None:
    _, body = reminder_email(invoice(), DUE + timedelta(days=days), 2, WORDING)
    opening = (
        f"Hello Acme! Nova Studio about INV-0003: 1,200.00 USD, due 2026-12-20, {days} days, https://pay.example/i/1."
    )
    assert body.startswith(opening + "\n\n") and "Hi Acme" not in body
    assert tone in body and "https://pay.example/i/1" in body.split(opening, 1)[1]  # the facts stay in the body


def test_without_wording_the_greeting_is_the_default() -> None:
    _, body = reminder_email(invoice(), DUE, 2)
    assert body.startswith("Hi Acme,\n\nInvoice INV-0003 for 1,200.00 USD is due today")


@pytest.mark.parametrize("hostile", ["{0.__class__}", "{customer.__init__}", "{unknown}", "{", "}{", "{{customer}}"])
def test_only_the_named_placeholders_are_filled(hostile: str) -> None:
    _, body = reminder_email(invoice(), DUE, 2, f"Dear {{customer}} {hostile}")
    expected = hostile.replace("{customer}", "Acme")
    assert body.startswith(f"Dear Acme {expected}\n\n")


async def test_only_the_operator_sets_the_reminder_wording(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        profile = ProfileStore(db)
        await profile.setup()
        with pytest.raises(ProfileError, match="only be set by the operator"):
            await profile.set("reminders", "Pay now or else", "coo")
        assert (await profile.get()).reminder_wording == ""
        await profile.set("reminders", "Hello {customer}", "telegram:1001")
        got = await profile.get()
    assert got.reminder_wording == "Hello {customer}"
    assert "payment reminder wording: Hello {customer}" in got.render() and "Hello" not in got.render_facts()
