"""Context assembly: always within budget, older turns summarized, facts kept, names resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.runtime import open_runtime
from graph.conversation.context import assemble, fit_turns
from graph.conversation.prompt import repair_tool_history
from graph.models.llm import estimate_message_tokens
from tests.conftest import RecordingChannel, llm_settings, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.smtp_server import SMTPServer


def test_fit_turns_cuts_at_user_boundaries() -> None:
    turns = [
        {"role": "user", "content": "a" * 400},
        {"role": "assistant", "content": "b" * 400},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "t"}]},
        {"role": "tool", "tool_call_id": "t", "content": "d"},
        {"role": "assistant", "content": "e"},
    ]
    kept, dropped = fit_turns(turns, 100)
    assert kept == turns[2:] and dropped == turns[:2]
    kept, dropped = fit_turns([{"role": "user", "content": "x" * 10_000}], 100)
    assert estimate_message_tokens(kept) <= 100 and dropped == []


def test_a_turn_too_big_for_the_budget_keeps_its_own_tool_calls_and_results() -> None:
    """Many offered tools can leave almost no room: the turn in progress still carries the model's tool call and
    its result (without them the model asks for the same tool again, round after round)."""
    turns = [
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "what is on friday? " + "x" * 4000},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "t"}]},
        {"role": "tool", "tool_call_id": "t", "content": "10:00 standup"},
    ]
    kept, dropped = fit_turns(turns, 60)
    assert [m["role"] for m in kept] == ["user", "assistant", "tool"] and kept[2]["content"] == "10:00 standup"
    assert len(kept[0]["content"]) < 400  # the request itself is cut to the room left
    assert dropped == turns[:2]


def test_assemble_respects_the_budget_with_everything_full() -> None:
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "w" * 300} for i in range(80)]
    built = assemble(
        "system " * 50,
        "Context:",
        "s" * 20_000,
        ["r" * 500] * 50,
        ["m" * 500] * 50,
        turns,
        1500,
    )
    head = 2  # our instructions, then the context as data
    assert built.tokens <= 1500 and built.dropped == turns[: len(turns) - (len(built.messages) - head)]


class _CountedMessage(dict[str, Any]):
    """A chat message that counts how often it is serialised (json reads a dict subclass through ``items``)."""

    encoded = 0

    def items(self):  # type: ignore[override]
        _CountedMessage.encoded += 1
        return super().items()


def test_assemble_estimates_each_turn_once_and_counts_what_it_sends() -> None:
    """The estimate serialises every message: a prompt's turns are encoded once per assembly, not once per cut
    point tried and again for the total (a conversation's turns were encoded 2-5 times a prompt)."""
    plain: list[dict[str, Any]] = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "w" * 300} for i in range(40)
    ]
    plain.append({"role": "assistant", "content": "", "tool_calls": [{"id": "t1", "type": "function"}]})
    plain.append({"role": "user", "content": "and the open call?"})  # repair answers t1 before this turn
    for budget in (100_000, 1_500):  # everything fits; older turns are dropped (several cut points tried)
        turns: list[dict[str, Any]] = [_CountedMessage(m) for m in plain]
        _CountedMessage.encoded = 0
        built = assemble("system", "Context:", "", [], [], turns, budget, repair_tool_history)
        assert _CountedMessage.encoded == len(turns)
        assert bool(built.dropped) == (budget == 1_500)
        expected = assemble("system", "Context:", "", [], [], plain, budget, repair_tool_history)
        assert built.tokens == expected.tokens == estimate_message_tokens(expected.messages)
        assert [dict(m) for m in built.messages] == expected.messages


BUDGET = 2000
"""Tokens a chat call may take in the two tests below: the fixed part (instructions, context, tool schemas) is
~1,550, so ~450 remain for the conversation."""


async def test_long_conversation_stays_in_budget_and_summarizes(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    # A small budget: the instructions and the ~1,200 tokens of tool schemas every call carries leave room for
    # a few turns only, so the 40 fillers (~2,800 tokens) must be folded into a summary.
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm, context_budget=BUDGET))
    async with open_runtime(settings, console=False) as rt:
        rt.dispatcher.attach(RecordingChannel("rec"))
        await rt.dispatcher.handle(operator_message("Remember: our invoice INV-7 to Acme is 4,200 EUR, due March 3."))
        for i in range(40):
            await rt.dispatcher.handle(operator_message(f"filler message number {i} " + "blah " * 60))
        facts = [e for e in await rt.db.events(kind="message.in") if "INV-7" in e.payload["text"]]
    for request in fake_llm.chat_requests:
        sent = estimate_message_tokens([*request["messages"], *request.get("tools", [])])
        assert sent <= BUDGET, sent
    summary_calls = [r for r in fake_llm.chat_requests if "Update the running summary" in r["messages"][0]["content"]]
    assert summary_calls  # older turns were folded into a summary
    assert len(facts) == 1  # the ledger keeps the fact whatever the prompt holds


async def test_memory_recalls_an_early_fact_into_a_late_prompt(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(
        tmp_path,
        llm=llm_settings(fake_llm, context_budget=BUDGET),
        memory={"semantic": True, "ingest_interval_s": 0.05},
    )
    async with open_runtime(settings, console=False) as rt:
        rt.dispatcher.attach(RecordingChannel("rec"))
        await rt.dispatcher.handle(operator_message("Acme agreed to pay invoice INV-7 within 45 days."))
        for i in range(25):
            await rt.dispatcher.handle(
                operator_message(f"unrelated chatter {i} about the weather and lunch " + "la " * 50)
            )
        assert rt.ingestor is not None
        await rt.ingestor.wait_idle()
        await rt.dispatcher.handle(operator_message("What payment terms did Acme agree to for INV-7?"))
    last = fake_llm.chat_requests[-1]
    system, data = last["messages"][0]["content"], last["messages"][1]["content"]
    assert "Acme agreed to pay invoice INV-7 within 45 days." in data and last["messages"][1]["role"] == "user"
    assert "Acme agreed" not in system  # recalled text is data, never part of the instructions
    assert "chat:rec]" in data  # recalled lines carry their source
    assert not any("Acme agreed" in str(m.get("content")) for m in last["messages"][2:])  # the turn itself fell out


async def test_email_a_contact_by_name_and_ambiguity_asks(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    with SMTPServer() as smtp:
        settings = make_settings(tmp_path, llm=llm_settings(fake_llm), smtp=smtp.settings())
        async with open_runtime(settings, console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            fake_llm.tool_call("upsert_contact", {"name": "Ana Silva", "emails": ["ana@silva.pt"]})
            fake_llm.reply("Saved Ana.")
            await rt.dispatcher.handle(operator_message("Ana Silva's email is ana@silva.pt"))
            fake_llm.tool_call("send_email", {"to": ["Ana"], "subject": "Proposal", "body": "It is ready."})
            await rt.dispatcher.handle(operator_message("email Ana that the proposal is ready"))
            card = next(m for m in chan.sent if m.buttons)
            assert "To: ana@silva.pt" in card.text
            await rt.dispatcher.handle(operator_message("/pending", kind="command"))  # leave that card open
            fake_llm.tool_call("upsert_contact", {"name": "Ana Costa", "emails": ["ana@costa.pt"]})
            fake_llm.reply("Saved.")
            await rt.dispatcher.handle(operator_message("Ana Costa is ana@costa.pt"))
            cards_before = len([m for m in chan.sent if m.buttons])
            fake_llm.tool_call("send_email", {"to": ["Ana"], "subject": "Hi", "body": "Hello"})
            fake_llm.reply("Which Ana: Silva or Costa?")
            await rt.dispatcher.handle(operator_message("actually, email Ana hello"))
    tool_result = fake_llm.chat_requests[-1]["messages"][-1]["content"]
    assert "ambiguous" in tool_result and "ana@silva.pt" in tool_result and "ana@costa.pt" in tool_result
    assert len([m for m in chan.sent if m.buttons]) == cards_before  # no card for a guessed address
    assert chan.sent[-1].text == "Which Ana: Silva or Costa?"
