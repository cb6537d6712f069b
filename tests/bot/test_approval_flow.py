"""Approvals end to end through the real runtime (dispatcher, graph, outbox) and a real SMTP server.

I1: nothing is sent without an approval for the exact action; I2: one approval, at most one email.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.messages import InboundMessage, OutboundMessage
from bot.running import Runtime
from bot.runtime import open_runtime
from connectors.email import EmailAction
from prompts.messages import EDITED_COMMAND
from tests.conftest import ManualClock, RecordingChannel, llm_settings, make_settings
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.fakes.polling import eventually, eventually_async
from tests.fakes.smtp_server import SMTPServer

OPERATOR = "telegram:1001"
_keys = iter(range(10**6))


@asynccontextmanager
async def runtime(
    tmp_path: Path, smtp: SMTPServer, clock: ManualClock | None = None, **overrides: Any
) -> AsyncIterator[tuple[Runtime, RecordingChannel]]:
    fast_outbox = {"backoff_base_s": 0.05, "poll_s": 0.05, **overrides.pop("outbox", {})}
    settings = make_settings(tmp_path, smtp=smtp.settings(), outbox=fast_outbox, **overrides)
    async with open_runtime(settings, console=False, clock=clock or ManualClock()) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        yield rt, chan


async def events(rt: Runtime, kind: str, count: int) -> bool:
    """Whether the event log holds at least ``count`` events of ``kind``."""
    return len(await rt.db.events(kind=kind)) >= count


def inbound(
    text: str = "",
    sender: str = OPERATOR,
    chat: str = "1001",
    kind: str = "message",
    data: str | None = None,
    channel: str = "rec",
    private: bool | None = None,
) -> InboundMessage:
    return InboundMessage(
        channel=channel,
        chat_id=chat,
        sender=sender,
        text=text,
        kind=kind,  # type: ignore[arg-type]
        callback_data=data,
        update_key=f"t:{next(_keys)}",
        private=private,
    )


def card(chan: RecordingChannel) -> OutboundMessage:
    return next(m for m in reversed(chan.sent) if m.buttons and m.edit_message_id is None)


def data(message: OutboundMessage, label: str) -> str:
    return next(b.data for b in message.buttons if b.label == label)


def edits(chan: RecordingChannel) -> list[str]:
    return [m.text for m in chan.sent if m.edit_message_id is not None]


EMAIL = "/email ana@example.org Proposal ready | Hi Ana,\nthe proposal is ready.\nBest, Me"


async def test_approve_sends_exactly_the_card_once(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            shown = card(chan)
            assert [b.label for b in shown.buttons] == ["Approve", "Edit", "Reject"]
            assert all(len(b.data.encode()) <= 64 for b in shown.buttons)
            assert "From: me@example.org\nTo: ana@example.org\nSubject: Proposal ready" in shown.text
            assert "Hi Ana,\nthe proposal is ready.\nBest, Me" in shown.text
            assert smtp.delivered == []  # nothing before the tap (I1)
            await rt.dispatcher.handle(inbound(kind="callback", data=data(shown, "Approve")))
            delivered = await smtp.wait_delivered(1)
            await eventually(lambda: any(t.startswith("Sent at") for t in edits(chan)))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(shown, "Approve")))  # double tap
            await asyncio.sleep(0.3)
            decided = await rt.db.events(kind="approval.decided")
    assert len(smtp.delivered) == 1
    mail = delivered[0]
    assert mail.rcpt_tos == ["ana@example.org"] and mail.message["Subject"] == "Proposal ready"
    assert mail.body == "Hi Ana,\nthe proposal is ready.\nBest, Me"
    sent_card = next(t for t in edits(chan) if t.startswith("Sent at"))
    assert mail.message["Message-ID"] in sent_card
    assert chan.sent[-1].text.startswith("Already decided: approved by telegram:1001")
    assert len(decided) == 1 and decided[0].actor == OPERATOR and decided[0].payload["decision"] == "approved"
    assert len(decided[0].payload["digest"]) == 64


async def test_reject_sends_nothing(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            shown = card(chan)
            await rt.dispatcher.handle(inbound(kind="callback", data=data(shown, "Reject")))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(shown, "Approve")))
            await asyncio.sleep(0.3)
    assert smtp.delivered == []
    assert any(t.startswith("Rejected by telegram:1001. Nothing was sent.") for t in edits(chan))
    assert chan.sent[-1].text.startswith("Already decided: rejected")


async def test_edit_replaces_the_card_and_the_edited_text_arrives(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            old = card(chan)
            await rt.dispatcher.handle(inbound(kind="callback", data=data(old, "Edit")))
            assert "Send the corrected email" in chan.sent[-1].text
            await rt.dispatcher.handle(inbound("subject=New\nsubjekt=typo"))  # unreadable: asked again, nothing lost
            assert "could not read that edit" in chan.sent[-1].text
            await rt.dispatcher.handle(inbound("subject=Proposal v2\nbody=Hi Ana,\nhere is v2."))
            new = card(chan)
            assert new is not old and "Subject: Proposal v2" in new.text and "here is v2." in new.text
            assert any("Replaced by a corrected card" in t for t in edits(chan))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(old, "Approve")))  # the old card is dead
            assert chan.sent[-1].text.startswith("Already decided: superseded")
            await rt.dispatcher.handle(inbound(kind="callback", data=data(new, "Approve")))
            delivered = await smtp.wait_delivered(1)
            await asyncio.sleep(0.2)
    assert len(smtp.delivered) == 1
    assert delivered[0].message["Subject"] == "Proposal v2" and delivered[0].body == "Hi Ana,\nhere is v2."


async def test_expired_card_sends_nothing_and_says_so(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp, approvals={"ttl_hours": 0.5 / 3600}, expiry_sweep_s=0.1) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            shown = card(chan)
            await eventually(lambda: any(t.startswith("Expired without a decision") for t in edits(chan)))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(shown, "Approve")))
            await asyncio.sleep(0.2)
            row = await rt.approvals.store.get(data(shown, "Approve").split(":")[1])
    assert smtp.delivered == []
    assert row is not None and row.state == "expired"
    assert chan.sent[-1].text.startswith("Already decided: expired")


async def test_strangers_other_chats_and_forged_data_change_nothing(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp, operators="telegram:1001,telegram:1002") as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            shown = card(chan)
            good = data(shown, "Approve")
            verb, approval_id, nonce = good.split(":")
            sent_before = len(chan.sent)
            await rt.dispatcher.handle(inbound(kind="callback", data=good, sender="telegram:666", chat="1001"))
            await rt.dispatcher.handle(inbound(kind="callback", data=good, sender="telegram:1002", chat="1002"))
            for forged in (
                f"ap:{approval_id}:wrongnonce",
                f"ap:zzzzzzzzzzzz:{nonce}",
                "ap:only-two",
                "x" * 200,
                f"rs:{approval_id}:{nonce}",
                f"zz:{approval_id}:{nonce}",
            ):
                await rt.dispatcher.handle(inbound(kind="callback", data=forged))
            await asyncio.sleep(0.3)
            row = await rt.approvals.store.get(approval_id)
            foreign = await rt.db.events(kind="approval.foreign")
            forged_events = await rt.db.events(kind="approval.forged")
    assert smtp.delivered == []
    assert row is not None and row.state == "pending"
    # the stranger got the one refusal; nothing else was said to anyone
    assert [m.text for m in chan.sent[sent_before:]] == ["Sorry, I only work for my operator."]
    assert len(foreign) == 1 and foreign[0].actor == "telegram:1002"
    assert len(forged_events) == 5  # all but the well-formed resend, which has nothing to resend


async def test_concurrent_approvals_from_two_clients_send_one_email(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp) as (rt, chan):
            slack = RecordingChannel("slackish")
            rt.dispatcher.attach(slack)
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            shown = card(chan)
            # the same operator opens the card on a second client (/pending shows it there too)
            await rt.dispatcher.handle(
                inbound("/pending", kind="command", sender="slack:T1:U1", chat="D1", channel="slackish", private=True)
            )
            second = card(slack)
            await asyncio.gather(
                rt.dispatcher.handle(inbound(kind="callback", data=data(shown, "Approve"))),
                rt.dispatcher.handle(
                    inbound(
                        kind="callback",
                        data=data(second, "Approve"),
                        sender="slack:T1:U1",
                        chat="D1",
                        channel="slackish",
                    )
                ),
            )
            await smtp.wait_delivered(1)
            await eventually(lambda: any(t.startswith("Sent at") for t in edits(slack)))
            await asyncio.sleep(0.3)
    assert len(smtp.delivered) == 1
    already = [m for m in chan.sent + slack.sent if m.text.startswith("Already decided")]
    assert len(already) == 1
    assert any(t.startswith("Sent at") for t in edits(chan))  # both copies of the card show the truth


async def test_smtp_down_is_retried_then_reported(tmp_path: Path) -> None:
    with SMTPServer(default_mode="tempfail") as smtp:
        async with runtime(tmp_path, smtp, outbox={"max_attempts": 3}) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Approve")))
            await eventually(lambda: any(t.startswith("Failed:") for t in edits(chan)))
            retries = await rt.db.events(kind="action.retry")
            failed = await rt.db.events(kind="action.failed")
    assert smtp.delivered == []
    assert len(retries) == 2 and len(failed) == 1
    assert "SMTP 451" in failed[0].payload["detail"] and "gave up after 3 attempts" in failed[0].payload["detail"]


async def test_temporary_error_then_success_sends_once(tmp_path: Path) -> None:
    with SMTPServer(modes=["tempfail", "tempfail"]) as smtp:
        async with runtime(tmp_path, smtp) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Approve")))
            await smtp.wait_delivered(1)
            await eventually(lambda: any(t.startswith("Sent at") for t in edits(chan)))
    assert len(smtp.delivered) == 1


async def test_permanent_error_is_not_retried(tmp_path: Path) -> None:
    with SMTPServer(default_mode="permfail") as smtp:
        async with runtime(tmp_path, smtp) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Approve")))
            await eventually(lambda: any(t.startswith("Failed: SMTP 554") for t in edits(chan)))
            retries = await rt.db.events(kind="action.retry")
    assert retries == [] and smtp.delivered == []


async def test_dropped_after_data_is_unknown_and_never_resent_by_itself(tmp_path: Path) -> None:
    with SMTPServer(modes=["drop_after_data"]) as smtp:
        async with runtime(tmp_path, smtp) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Approve")))
            await eventually(lambda: any(t.startswith("Unknown outcome") for t in edits(chan)))
            await asyncio.sleep(0.5)
            assert len(smtp.delivered) == 1  # it did arrive, but we could not know
            unknown_card = next(m for m in chan.sent if m.edit_message_id and m.text.startswith("Unknown outcome"))
            assert [b.label for b in unknown_card.buttons] == ["Resend"]
            # the operator decides to resend: one more, explicitly
            await rt.dispatcher.handle(inbound(kind="callback", data=unknown_card.buttons[0].data))
            await smtp.wait_delivered(2)
            await rt.dispatcher.handle(inbound(kind="callback", data=unknown_card.buttons[0].data))
            await asyncio.sleep(0.3)
    assert len(smtp.delivered) == 2
    assert smtp.delivered[0].message["Message-ID"] == smtp.delivered[1].message["Message-ID"]


async def test_email_command_bad_input_and_missing_configuration(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp) as (rt, chan):
            for bad in ("/email", "/email ana@example.org no bar here", "/email ana@example.org Subj |  "):
                await rt.dispatcher.handle(inbound(bad, kind="command"))
                assert chan.sent[-1].text == "Usage: /email <to>[,<to>…] <subject> | <body>"
            await rt.dispatcher.handle(inbound("/email not-an-address Hi | body", kind="command"))
            assert chan.sent[-1].text.startswith("That email is not valid: 'not-an-address' is not an email address")
            assert await rt.approvals.store.list_approvals() == []
    settings = make_settings(tmp_path / "b")
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(inbound("/email ana@example.org Hi | body", kind="command"))
    assert "Email is not configured" in chan.sent[-1].text


async def test_pending_lists_open_cards_and_approving_several_works(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp) as (rt, chan):
            await rt.dispatcher.handle(inbound("/pending", kind="command"))
            assert chan.sent[-1].text == "Nothing waits for your approval."
            for who in ("ana", "bo", "cy"):
                await rt.dispatcher.handle(inbound(f"/email {who}@example.org Hello | Hi {who}", kind="command"))
            await rt.dispatcher.handle(inbound("/pending", kind="command"))
            assert chan.sent[-1].text.startswith("3 card(s) wait")
            listed = [m for m in chan.sent[-4:-1] if m.buttons]
            assert len(listed) == 3
            await asyncio.gather(
                *(rt.dispatcher.handle(inbound(kind="callback", data=data(m, "Approve"))) for m in listed)
            )
            await smtp.wait_delivered(3)
            await asyncio.sleep(0.2)
    assert sorted(d.rcpt_tos[0] for d in smtp.delivered) == ["ana@example.org", "bo@example.org", "cy@example.org"]


async def test_model_proposes_email_graph_waits_and_resumes(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.tool_call(
        "send_email", {"to": ["ana@example.org"], "subject": "Proposal", "body": "Hi Ana, the proposal is ready."}
    )
    fake_llm.reply("Done: the email to Ana went out after your approval.")
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp, llm=llm_settings(fake_llm)) as (rt, chan):
            await rt.dispatcher.handle(inbound("email Ana that the proposal is ready"))
            shown = card(chan)
            assert "To: ana@example.org" in shown.text and "Hi Ana, the proposal is ready." in shown.text
            assert await rt.coordinator.waiting_for("rec:1001") is not None
            assert len(fake_llm.chat_requests) == 1 and smtp.delivered == []
            await rt.dispatcher.handle(inbound(kind="callback", data=data(shown, "Approve")))
            await smtp.wait_delivered(1)
            await eventually(lambda: any(m.text.startswith("Done: the email") for m in chan.sent))
            assert await rt.coordinator.waiting_for("rec:1001") is None
    tool_answer = fake_llm.chat_requests[1]["messages"][-1]
    assert tool_answer["role"] == "tool" and "approved" in tool_answer["content"]
    assert len(smtp.delivered) == 1


async def test_model_proposal_rejected_tells_the_model(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.tool_call("send_email", {"to": ["ana@example.org"], "subject": "S", "body": "B"})
    fake_llm.reply("Understood, I did not send it.")
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp, llm=llm_settings(fake_llm)) as (rt, chan):
            await rt.dispatcher.handle(inbound("email Ana"))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Reject")))
            await eventually(lambda: chan.sent[-1].text == "Understood, I did not send it.")
    assert smtp.delivered == []
    assert "rejected" in fake_llm.chat_requests[1]["messages"][-1]["content"]


async def test_operator_moving_on_leaves_history_valid(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.tool_call("send_email", {"to": ["ana@example.org"], "subject": "S", "body": "B"})
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp, llm=llm_settings(fake_llm)) as (rt, chan):
            await rt.dispatcher.handle(inbound("email Ana"))
            shown = card(chan)
            await rt.dispatcher.handle(inbound("actually, what time is it?"))
            # every tool call in the prompt has an answer (endpoints reject dangling calls)
            prompt = fake_llm.chat_requests[-1]["messages"]
            call_ids = {c["id"] for m in prompt if m.get("tool_calls") for c in m["tool_calls"]}
            answered = {m["tool_call_id"] for m in prompt if m["role"] == "tool"}
            assert call_ids <= answered
            # the card still works on its own
            await rt.dispatcher.handle(inbound(kind="callback", data=data(shown, "Approve")))
            await smtp.wait_delivered(1)


async def test_policy_relaxed_sends_known_recipients_directly_but_never_new_ones(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp, approvals={"risk_tolerance": "relaxed"}) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Approve")))
            await smtp.wait_delivered(1)
            await rt.dispatcher.handle(inbound("/email ana@example.org Again | Hi again", kind="command"))
            await smtp.wait_delivered(2)  # known recipient: no card needed under "relaxed"
            await rt.dispatcher.handle(inbound("/email new@example.org Hello | Hi", kind="command"))
            assert card(chan).buttons and await rt.approvals.store.outbox_in("queued") == []  # a new address: a card
        async with runtime(tmp_path / "f", smtp, approvals={"forbidden": ["email.send"]}) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            assert chan.sent[-1].text == "Your policy forbids sending email."


@asynccontextmanager
async def outage(tmp_path: Path, smtp: SMTPServer) -> AsyncIterator[tuple[Runtime, RecordingChannel, ManualClock]]:
    """A runtime whose approved email met an SMTP outage long enough to open the breaker."""
    # The outbox looks again 0.05 s after a deferral; the breaker's own cooldown runs on the test's clock.
    outbox = {"max_attempts": 50, "breaker_failures": 3, "breaker_window_s": 60, "breaker_cooldown_s": 0.05}
    clock = ManualClock()
    async with runtime(tmp_path, smtp, outbox=outbox, clock=clock) as (rt, chan):
        await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
        await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Approve")))
        await eventually_async(lambda: events(rt, "action.breaker_open", 1), what="the breaker to open")
        yield rt, chan, clock


async def test_connector_breaker_stops_attempts_during_an_outage(tmp_path: Path) -> None:
    with SMTPServer(default_mode="tempfail") as smtp:
        async with outage(tmp_path, smtp) as (rt, chan, clock):
            # Due three times since, held back each time:
            await eventually_async(lambda: events(rt, "action.deferred", 3), what="three deferrals")
            assert len(await rt.db.events(kind="action.retry")) == 3  # open: no attempt reached the server
            smtp.default_mode = "ok"  # the server is back; after the cooldown one probe goes through
            clock.advance(1)
            await smtp.wait_delivered(1, timeout=10)
            await eventually(lambda: rt.runner.breakers["email.send"].state == "closed")
            opened = await rt.db.events(kind="action.breaker_open")
    assert len(smtp.delivered) == 1 and len(opened) == 1


async def test_a_probe_refused_for_good_does_not_hold_the_breaker_half_open(tmp_path: Path) -> None:
    with SMTPServer(default_mode="tempfail") as smtp:
        async with outage(tmp_path, smtp) as (rt, chan, clock):
            # The outage ends, but the probe is an email the server refuses for good (554): no verdict.
            smtp.default_mode = "permfail"
            clock.advance(1)
            await eventually(lambda: any(t.startswith("Failed: SMTP 554") for t in edits(chan)))
            smtp.default_mode = "ok"
            await rt.dispatcher.handle(inbound("/email bob@example.org Hello | Hi Bob", kind="command"))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Approve")))
            await smtp.wait_delivered(1, timeout=10)  # the next approved email probes, and goes
            await eventually(lambda: rt.runner.breakers["email.send"].state == "closed")
    assert [d.rcpt_tos for d in smtp.delivered] == [["bob@example.org"]]


async def test_policy_command_loosens_only_after_confirmation_and_never_lifts_forbidden(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Approve")))
            await smtp.wait_delivered(1)
            await eventually(lambda: any(t.startswith("Sent at") for t in edits(chan)))  # the outcome is shown
            await rt.dispatcher.handle(inbound("/policy risk relaxed", kind="command"))
            confirm = chan.sent[-1]
            assert confirm.text.startswith("Loosen the approval policy from balanced to relaxed?")
            await rt.dispatcher.handle(inbound("/email ana@example.org Early | Not yet", kind="command"))
            assert card(chan).buttons and len(smtp.delivered) == 1  # not loosened before the confirmation
            await rt.dispatcher.handle(inbound(kind="callback", data=data(confirm, "Confirm")))
            assert chan.sent[-1].text == "Risk tolerance is now relaxed (confirmed by telegram:1001)."
            await rt.dispatcher.handle(inbound("/email ana@example.org Again | Hi again", kind="command"))
            await smtp.wait_delivered(2)  # known recipient, relaxed: no card
            await eventually(lambda: chan.sent[-1].text.startswith("Sent at"))  # its outcome, as a message
            await rt.dispatcher.handle(inbound("/policy risk cautious", kind="command"))  # tightening: at once
            assert chan.sent[-1].text == "Risk tolerance is now cautious; it is in force now."
            await rt.dispatcher.handle(inbound("/email ana@example.org Third | Hi", kind="command"))
            assert card(chan).buttons and await rt.approvals.store.outbox_in("queued") == []  # cautious: a card
        async with runtime(tmp_path / "f", smtp, approvals={"forbidden": ["email.send"]}) as (rt, chan):
            await rt.dispatcher.handle(inbound("/policy risk relaxed", kind="command"))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(chan.sent[-1], "Confirm")))
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            assert chan.sent[-1].text == "Your policy forbids sending email."


@pytest.mark.parametrize("delivery_ids", [True, False], ids=["platform", "console"])
async def test_a_new_action_never_comes_back_as_an_old_actions_card(tmp_path: Path, delivery_ids: bool) -> None:
    """Tool-call ids that repeat from one answer to the next (some OpenAI-compatible servers number the
    calls of each answer) must not make Bob's email show Ana's decided card, also where messages carry
    no delivery id (the console)."""

    def said(text: str) -> InboundMessage:
        message = inbound(text)
        return message if delivery_ids else replace(message, update_key=None)

    async with FakeOpenAI() as llm:
        for to in ("ana", "bob"):
            args = {"to": [f"{to}@example.org"], "subject": f"For {to}", "body": f"Hi {to}"}
            llm.script.append(Scripted(tool_calls=[("send_email", args)], call_ids=["send_email:0"]))
            llm.reply(f"Sent to {to}.")
        with SMTPServer() as smtp:
            async with runtime(tmp_path, smtp, llm=llm_settings(llm)) as (rt, chan):
                await rt.dispatcher.handle(said("email Ana"))
                await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Approve")))
                await smtp.wait_delivered(1)
                await eventually(lambda: any(m.text == "Sent to ana." for m in chan.sent))
                await rt.dispatcher.handle(said("now email Bob"))
                second = card(chan)
                assert "To: bob@example.org" in second.text and second.buttons
                await rt.dispatcher.handle(inbound(kind="callback", data=data(second, "Approve")))
                await smtp.wait_delivered(2)
    assert [d.rcpt_tos for d in smtp.delivered] == [["ana@example.org"], ["bob@example.org"]]


async def test_an_approval_id_is_never_reused_for_another_action(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp) as (rt, _):
            ana = EmailAction(from_addr="me@example.org", to=("ana@example.org",), subject="s", body="Hi Ana")
            bob = EmailAction(from_addr="me@example.org", to=("bob@example.org",), subject="s", body="Hi Bob")
            first = await rt.approvals.propose(ana, "rec:1001", "graph", "telegram:1001", approval_id="abc123abc123")
            again = await rt.approvals.propose(ana, "rec:1001", "graph", "telegram:1001", approval_id="abc123abc123")
            with pytest.raises(RuntimeError, match="different action"):
                await rt.approvals.propose(bob, "rec:1001", "graph", "telegram:1001", approval_id="abc123abc123")
            rows = await rt.approvals.store.list_approvals()
    assert first.approval is not None and again.approval is not None
    assert again.approval.id == first.approval.id  # a re-run finds its own row
    assert [r.action["to"] for r in rows] == [["ana@example.org"]]


async def test_a_second_process_on_the_data_dir_leaves_the_first_ones_sending_alone(tmp_path: Path) -> None:
    """`coo chat` started beside `coo run`: an email the first is sending is neither marked unknown nor resent."""
    with SMTPServer(modes=["hold"]) as smtp:
        async with runtime(tmp_path, smtp) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Approve")))
            await smtp.wait_delivered(1)  # the message is in; its "250" is held: the row is running
            async with runtime(tmp_path, smtp) as (second, _):  # its start recovers what crashes left
                assert len(await second.approvals.store.outbox_in("running")) == 1
                assert await second.approvals.store.outbox_in("unknown") == []
            smtp.release()
            await eventually(lambda: any(t.startswith("Sent at") for t in edits(chan)))
            sent = await rt.approvals.store.outbox_in("sent")
    assert len(sent) == 1 and len(smtp.delivered) == 1


async def test_a_sent_outcome_is_recorded_over_unknown_set_while_it_ran(tmp_path: Path) -> None:
    """A process that could not tell the sender was alive (an older version) marked the row unknown
    mid-send: the sender's "sent" replaces it, so nobody is asked to resend a delivered email."""
    with SMTPServer(modes=["hold"]) as smtp:
        async with runtime(tmp_path, smtp) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Approve")))
            await smtp.wait_delivered(1)
            [row] = await rt.approvals.store.outbox_in("running")
            assert await rt.approvals.store.finish(row.approval_id, "unknown", "marked by another process")
            smtp.release()
            await eventually(lambda: any(t.startswith("Sent at") for t in edits(chan)))
            assert await rt.approvals.store.outbox_in("unknown") == []
            assert len(await rt.approvals.store.outbox_in("sent")) == 1


async def test_editing_a_commands_message_does_not_run_it_again(tmp_path: Path) -> None:
    """Under "relaxed" a command to a known address sends at once: an edit of it (a typo fixed after the
    fact) must not send a second email."""
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp, approvals={"risk_tolerance": "relaxed"}) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Approve")))
            await smtp.wait_delivered(1)
            await rt.dispatcher.handle(inbound("/email ana@example.org Again | Hi again", kind="command"))
            await smtp.wait_delivered(2)  # known recipient: sent without a card
            before = len(chan.sent)
            await rt.dispatcher.handle(inbound("/email ana@example.org Again | Hi again, fixed", kind="edit"))
            # The second email's "Sent at ..." notice may land before or after the edit's reply (it comes from
            # the outbox, on its own): the edit's own answer is the one line it gets.
            assert [m.text for m in chan.sent[before:] if not m.text.startswith("Sent")] == [EDITED_COMMAND]
            assert await rt.approvals.store.outbox_in("queued") == [] and not card(chan).text.endswith("fixed")
    assert len(smtp.delivered) == 2
