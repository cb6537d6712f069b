"""Notices to every operator about access changes made elsewhere (I6: nobody gets in silently)."""

from __future__ import annotations

from bot.digest import home_chats
from bot.messages import OutboundMessage
from bot.messenger import Messenger
from memory.control import ControlStore
from memory.db import Database
from prompts.messages import NEW_OPERATOR, PAIRING_REOPENED

_SEEN = "notices.access_seen"
KINDS = ("pairing.opened", "operator.paired")


async def notify_access_changes(db: Database, control: ControlStore, messenger: Messenger) -> int:
    """Tell every operator's own chat about pairings opened with ``coo pair`` and operators who paired
    since the last look. Returns how many notices were sent."""
    seen = await control.get(_SEEN)
    events = await db.events(kind=KINDS, after=int(seen or 0), limit=100)
    if seen is None:  # first look: history is not news
        await control.put(_SEEN, events[-1].id if events else 0)
        return 0
    sent = 0
    for event in events:
        if event.kind == "pairing.opened" and event.actor == "start":
            continue  # the start code exists only while there is nobody to tell
        for channel, chat_id, thread_id in await home_chats(control):
            if event.kind == "operator.paired":
                if chat_id == event.actor.rsplit(":", 1)[-1]:
                    continue  # the new operator was told when they paired
                text = NEW_OPERATOR.format(identity=event.actor, opened_by=event.payload.get("opened_by", "?"))
            else:
                text = PAIRING_REOPENED.format(minutes=event.payload.get("minutes", 15))
            await messenger.send_quietly(OutboundMessage(channel, chat_id, text, thread_id))
            sent += 1
        await control.put(_SEEN, event.id)
    return sent
