"""The console as a channel: replies to a press made in the console are kept for that operator's next page
(a card is not: the cards page shows cards), a bounded number of them, and every send wakes live pages."""

from __future__ import annotations

import asyncio

from bot.messages import Button, OutboundMessage
from bot.web.channel import WebChannel


async def test_replies_are_kept_per_operator_until_taken() -> None:
    channel = WebChannel()
    await channel.send(OutboundMessage("web", "telegram:1001", "Already decided."))
    await channel.send(OutboundMessage("web", "slack:T1:U1", "Sent."))
    assert channel.take("telegram:1001") == ["Already decided."]
    assert channel.take("telegram:1001") == []
    assert channel.take("slack:T1:U1") == ["Sent."]


async def test_cards_and_edits_are_not_kept_but_get_ids() -> None:
    channel = WebChannel()
    card = OutboundMessage("web", "telegram:1001", "Send this email?", buttons=(Button("Approve", "ap:x"),))
    edit = OutboundMessage("web", "telegram:1001", "Approved.", edit_message_id="web-1")
    ids = [await channel.send(card), await channel.send(edit)]
    assert ids == [["web-1"], ["web-2"]]
    assert channel.take("telegram:1001") == []


async def test_an_operator_who_never_looks_keeps_only_the_last_ten() -> None:
    channel = WebChannel()
    for n in range(25):
        channel.note("telegram:1001", f"note {n}")
    assert channel.take("telegram:1001") == [f"note {n}" for n in range(15, 25)]


async def test_every_send_wakes_the_pages_waiting_then() -> None:
    channel = WebChannel()
    waiting = asyncio.ensure_future(channel.changed.wait())
    await channel.send(OutboundMessage("web", "telegram:1001", "Sent."))
    await asyncio.wait_for(waiting, 1)
    assert not channel.changed.is_set()  # the next page waits for the next change
