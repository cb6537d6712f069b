"""/remember, /recall, /forget with real LanceDB; export round-trip; bad input."""

from __future__ import annotations

from pathlib import Path

from bot.export import export_all, read_export
from bot.messages import InboundMessage
from bot.runtime import open_runtime
from memory.db import FORGOTTEN_TEXT
from prompts.messages import MEMORY_EMBEDDER_KEPT, MESSAGE_FORGOTTEN, PROFILE_RISK_MOVED
from tests.conftest import RecordingChannel, make_settings, number_in
from tests.fakes.smtp_server import free_port

_n = iter(range(10**6))


def cmd(text: str) -> InboundMessage:
    return InboundMessage("rec", "1001", "telegram:1001", text, kind="command", update_key=f"m:{next(_n)}")


def message(text: str) -> InboundMessage:
    return InboundMessage("rec", "1001", "telegram:1001", text, kind="message", update_key=f"m:{next(_n)}")


async def test_remember_recall_forget_really_removes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, memory={"semantic": True})
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(cmd("/remember Acme pays invoices net 45, contact Rita ✓ (مرحبا)"))
        ref = chan.sent[-1].text.removeprefix("Remembered (").removesuffix(").")
        await rt.dispatcher.handle(cmd("/remember Our studio closes in August"))
        await rt.dispatcher.handle(cmd("/recall when does Acme pay?"))
        assert chan.sent[-1].text.startswith(f"{ref} [") and "net 45, contact Rita ✓ (مرحبا)" in chan.sent[-1].text
        assert rt.memory is not None and await rt.memory.count("default") == 2
        await rt.dispatcher.handle(cmd(f"/forget {ref}"))
        assert chan.sent[-1].text == f"Forgotten: {ref}."
        await rt.dispatcher.handle(cmd("/recall when does Acme pay?"))
        assert "net 45" not in chan.sent[-1].text
        assert await rt.memory.count("default") == 1
        await rt.dispatcher.handle(cmd(f"/forget {ref}"))
        assert chan.sent[-1].text == f"Nothing stored under {ref}."
        events = await rt.db.events()
    # the note's text is in no event (the log is append-only, so it must never get there)
    assert not any("net 45" in str(e.payload) for e in events)
    async with open_runtime(settings, console=False) as rt:  # and it stays gone after a restart
        assert rt.memory is not None and await rt.memory.count("default") == 1
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(cmd("/recall Acme payment"))
        assert "net 45" not in chan.sent[-1].text


async def test_a_forgotten_chat_message_is_redacted_in_the_log_the_search_and_the_export(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = make_settings(data, memory={"semantic": True})
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        assert rt.ingestor is not None
        await rt.dispatcher.handle(message("our bank PIN is 7391 zebra"))
        await rt.dispatcher.handle(cmd("/remember the safe opens with 2468 walrus"))
        note = chan.sent[-1].text.removeprefix("Remembered (").removesuffix(").")
        await rt.ingestor.wait_idle()
        await rt.dispatcher.handle(cmd("/recall bank PIN"))
        ref = chan.sent[-1].text.split()[0]
        assert ref.startswith("msg-"), chan.sent[-1].text
        assert [e.id for e in await rt.db.search_messages(["7391"], 5)] == [int(ref.removeprefix("msg-"))]
        await rt.dispatcher.handle(cmd(f"/forget {ref}"))
        assert chan.sent[-1].text == MESSAGE_FORGOTTEN.format(ref=ref)
        await rt.dispatcher.handle(cmd(f"/forget {note}"))
        assert chan.sent[-1].text == f"Forgotten: {note}."
        await rt.dispatcher.handle(cmd(f"/forget {ref}"))
        assert chan.sent[-1].text == f"Nothing stored under {ref}."
        assert await rt.db.search_messages(["7391", "zebra", "PIN"], 5) == []
        [said] = [e for e in await rt.db.events("message.in") if e.id == int(ref.removeprefix("msg-"))]
    assert said.payload["text"] == FORGOTTEN_TEXT  # the row stays: a message came then
    await export_all(data, tmp_path / "export")
    exported = "".join(path.read_text() for path in sorted((tmp_path / "export").iterdir()))
    assert "forgotten" in exported and not number_in("7391", exported) and "zebra" not in exported
    assert not number_in("2468", exported) and "walrus" not in exported


async def test_bad_memory_input_is_a_clear_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, memory={"semantic": True})
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(cmd("/remember    "))
        assert chan.sent[-1].text == "Usage: /remember <what to remember>"
        await rt.dispatcher.handle(cmd("/remember " + "x" * 1_000_000))
        assert chan.sent[-1].text.startswith("I could not remember that:")
        await rt.dispatcher.handle(cmd("/forget two words"))
        assert chan.sent[-1].text.startswith("Usage: /forget")
        await rt.dispatcher.handle(cmd("/remember still works after that"))
        assert chan.sent[-1].text.startswith("Remembered (")
        assert rt.memory is not None and await rt.memory.count("default") == 1


async def test_export_round_trips(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", memory={"semantic": True})
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(cmd("/remember Lisbon office opens at 9"))
        await rt.dispatcher.handle(cmd("/profile set business Lumen Studio"))
        await rt.dispatcher.handle(cmd("/profile set risk nope"))
        assert chan.sent[-1].text == PROFILE_RISK_MOVED  # policy moved out of the profile (I1)
        events = await rt.db.events()
    counts = await export_all(tmp_path / "data", tmp_path / "out")
    parsed = read_export(tmp_path / "out")
    assert counts["events"] == len(events) == len(parsed["events"])
    assert [e["kind"] for e in parsed["events"]] == [e.kind for e in events]
    assert parsed["notes"][0]["text"] == "Lisbon office opens at 9"
    assert any(e["kind"] == "profile.set" and e["payload"]["value"] == "Lumen Studio" for e in parsed["events"])


async def test_openai_embeddings_use_the_configured_endpoint_and_key(tmp_path: Path) -> None:
    from tests.conftest import llm_settings
    from tests.fakes.openai_api import FakeOpenAI

    async with FakeOpenAI() as llm:
        settings = make_settings(
            tmp_path, llm=llm_settings(llm), memory={"semantic": True}, embeddings={"provider": "openai"}
        )
        async with open_runtime(settings, console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            await rt.dispatcher.handle(cmd("/remember The studio's VAT number is PT509999999"))
            await rt.dispatcher.handle(cmd("/remember Lunch is at noon"))
            await rt.dispatcher.handle(cmd("/recall VAT number"))
        embedding_calls = [r for r in llm.requests if r["_path"] == "/v1/embeddings"]
    assert "PT509999999" in chan.sent[-1].text.splitlines()[0]
    assert len(embedding_calls) >= 3 and {r["_auth"] for r in embedding_calls} == {f"Bearer {llm.api_key}"}


async def test_remember_with_the_embeddings_endpoint_down_keeps_the_note(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: every embedding request fails
    settings = make_settings(
        tmp_path,
        memory={"semantic": True},
        embeddings={"provider": "openai"},
        llm={"base_url": dead, "api_key": "sk-test-000000000000", "model": "m", "timeout_s": 1.0, "retry_base_s": 0.01},
    )
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(cmd("/remember Acme pays invoices net 45"))
        kept = await rt.db.fetchall("SELECT ref, text FROM notes")
        assert [text for _, text in kept] == ["Acme pays invoices net 45"]  # the canonical copy
        assert chan.sent[-1].text == MEMORY_EMBEDDER_KEPT.format(ref=kept[0][0])
        assert rt.memory_repair is not None  # and it is indexed once the embedder answers:
        assert [note.ref for note in await rt.memory_repair.missing()] == [kept[0][0]]
