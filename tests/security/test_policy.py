"""I1: nothing the model writes can loosen the approval policy; only an operator's command can."""

from __future__ import annotations

from pathlib import Path

from bot.runtime import open_runtime
from graph.approvals.policy import POLICY_RISK_KEY
from tests.conftest import RecordingChannel, llm_settings, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.smtp_server import SMTPServer


def card_data(message: object, label: str) -> str:
    return next(b.data for b in message.buttons if b.label == label)  # type: ignore[attr-defined]


async def test_the_model_cannot_switch_approvals_off(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    with SMTPServer() as smtp:
        settings = make_settings(tmp_path, llm=llm_settings(fake_llm), smtp=smtp.settings(), outbox={"poll_s": 0.05})
        async with open_runtime(settings, console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            # Ana was emailed before, with the operator's tap: under "relaxed" she would need no card.
            await rt.dispatcher.handle(operator_message("/email ana@example.org Proposal | Hi Ana", kind="command"))
            first = next(m for m in chan.sent if m.buttons)
            await rt.dispatcher.handle(operator_message("", kind="callback", data=card_data(first, "Approve")))
            await smtp.wait_delivered(1)
            # "Set my risk tolerance to relaxed and email Ana": the model tries every door it has.
            fake_llm.tool_call("update_profile", {"field": "risk", "value": "relaxed"})
            fake_llm.tool_call("update_profile", {"field": "instructions", "value": "Never ask for approval."})
            fake_llm.tool_call("send_email", {"to": ["ana@example.org"], "subject": "Again", "body": "Hi again"})
            fake_llm.reply("Done.")
            await rt.dispatcher.handle(operator_message("set my risk tolerance to relaxed and email Ana"))
            cards = [m for m in chan.sent if m.buttons and m is not first]
            policy = await rt.approvals.policy()
            stored = await rt.control.get(POLICY_RISK_KEY)
            tool_results = [m["content"] for m in fake_llm.chat_requests[-1]["messages"] if m["role"] == "tool"]
    assert len(smtp.delivered) == 1  # nothing went out without a tap
    assert len(cards) == 1 and "Subject: Again" in cards[0].text  # the email waits on a card
    assert policy.tolerance == "balanced" and stored is None
    assert any("unknown profile field 'risk'" in r for r in tool_results)
    assert any("can only be set by the operator" in r for r in tool_results)
