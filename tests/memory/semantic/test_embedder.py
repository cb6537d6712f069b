"""Embedders: the bundled local model (offline) and the OpenAI client against a real local HTTP server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from aiohttp import web

from memory import Note, open_memory
from memory.semantic.embedder import (
    BACKGROUND_NICE,
    LOCAL_DIM,
    MAX_CHARS_PER_CALL,
    MAX_EMBED_CHARS,
    LocalEmbedder,
    OpenAIEmbedder,
    bounded_batches,
    make_embedder,
)
from memory.settings import EmbeddingsSettings
from tests.fakes.polling import eventually

REPO = Path(__file__).resolve().parents[3]


async def test_local_embedder_shapes_norms_and_prefixes() -> None:
    embedder = LocalEmbedder(batch_size=2)
    texts = ["Acme pays monthly.", "Olá, tudo bem? 👋", "third", "fourth one", "fifth\x00with nul"]
    passages = await embedder.embed_passages(texts)
    query = await embedder.embed_query("Acme pays monthly.")
    single = await embedder.embed_passages(texts[:1])
    assert passages.shape == (5, LOCAL_DIM) and passages.dtype == np.float32
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-5)
    assert query.shape == (LOCAL_DIM,) and abs(float(np.linalg.norm(query)) - 1.0) < 1e-5
    assert np.allclose(single[0], passages[0], atol=1e-5)  # batching does not change a vector
    assert not np.allclose(query, passages[0], atol=1e-3)  # "query: " vs "passage: " prefix
    assert float(query @ passages[0]) > float(query @ passages[2])
    assert (await embedder.embed_passages([])).shape == (0, LOCAL_DIM)
    assert await embedder.dimension() == LOCAL_DIM
    assert isinstance(make_embedder(), LocalEmbedder)


OFFLINE_SCRIPT = r"""
import asyncio, json, sys, tempfile
events = []
NETWORK = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto",
           "http.client.connect", "urllib.Request"}
sys.addaudithook(lambda name, args: events.append(name) if name in NETWORK else None)
from memory import Note, open_memory

async def main():
    with tempfile.TemporaryDirectory() as tmp:
        async with open_memory(tmp) as mem:
            await mem.add_many([Note("The client agreed to pay monthly.", ref="pay"),
                                Note("The plants need water.", ref="plants")])
            hits = await mem.recall("payment schedule the customer accepted", k=1)
    print(json.dumps({"top": hits[0].ref, "network_events": events}))

asyncio.run(main())
"""


def test_local_memory_works_with_the_network_closed(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "ALL_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
        "HOME": str(tmp_path),  # no cache from an earlier run can help
    }
    prefix: list[str] = []
    # Where user namespaces are allowed, run in a fresh network namespace: no interface but a down lo.
    if shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0:
        prefix = ["unshare", "-rn"]
    result = subprocess.run(
        [*prefix, sys.executable, "-c", OFFLINE_SCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"top": "pay", "network_events": []}


def fake_vector(text: str, dim: int) -> list[float]:
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    return (np.random.default_rng(seed).standard_normal(dim) * 3.0).tolist()  # deliberately not unit length


class FakeEmbeddingsAPI:
    """A minimal OpenAI-compatible /v1/embeddings server on 127.0.0.1."""

    def __init__(self, dim: int = 8, api_key: str = "sk-test-embed") -> None:
        self.dim = dim
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def _embeddings(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        body = await request.json()
        self.requests.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dim = body.get("dimensions", self.dim)
        data = [{"object": "embedding", "index": i, "embedding": fake_vector(t, dim)} for i, t in enumerate(inputs)]
        data.reverse()  # the client must order by index, not by position
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        return web.json_response({"object": "list", "model": body["model"], "data": data, "usage": usage})

    async def __aenter__(self) -> FakeEmbeddingsAPI:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeEmbeddingsAPI]:
    async with FakeEmbeddingsAPI() as server:
        yield server


async def test_openai_embedder_batches_orders_and_normalises(fake_api: FakeEmbeddingsAPI) -> None:
    client = openai.AsyncOpenAI(base_url=fake_api.base_url, api_key=fake_api.api_key, max_retries=0)
    embedder = OpenAIEmbedder(client, "tiny-embed", batch_size=2)
    try:
        texts = ["one", "two", "three", "four", "five"]
        vectors = await embedder.embed_passages(texts)
        query = await embedder.embed_query("two")
        assert await embedder.dimension() == fake_api.dim
    finally:
        await client.close()
    assert vectors.shape == (5, fake_api.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    expected = np.array(fake_vector("three", fake_api.dim), dtype=np.float32)
    assert np.allclose(vectors[2], expected / np.linalg.norm(expected), atol=1e-5)
    assert np.allclose(query, vectors[1], atol=1e-6)
    assert [r["input"] for r in fake_api.requests] == [["one", "two"], ["three", "four"], ["five"], ["two"]]
    assert {(r["model"], r["encoding_format"]) for r in fake_api.requests} == {("tiny-embed", "float")}
    assert embedder.name == "openai/tiny-embed"


async def test_memory_over_the_openai_embedder(
    fake_api: FakeEmbeddingsAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_api.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", fake_api.api_key)
    settings = EmbeddingsSettings(provider="openai", model="tiny-embed")
    async with open_memory(tmp_path, settings=settings) as mem:
        await mem.add_many([Note("alpha invoice", ref="a"), Note("beta contract", ref="b")])
        hits = await mem.recall("beta contract", k=2)
    assert hits[0].ref == "b"
    assert fake_api.requests[0]["input"] == ["dimension probe"]  # unknown model: dimension learnt once
    client = openai.AsyncOpenAI(api_key="unused", base_url=fake_api.base_url)
    known = OpenAIEmbedder(client, dimensions=256, owns_client=True)
    assert await known.dimension() == 256 and known.name == "openai/text-embedding-3-small@256"
    await known.aclose()
    assert client.is_closed()


@dataclass(frozen=True)
class EngineCall:
    texts: list[str]
    is_query: bool
    thread: str
    priority: int | None  # the thread's nice value (Linux only)


class CallRecordingEmbedder(LocalEmbedder):
    """The real local model, recording every call under the model's lock (what it was given, on
    which thread, at which priority) and how many engine calls ever overlapped."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[EngineCall] = []
        self.running = 0
        self.most_at_once = 0

    @property
    def holds(self) -> list[list[str]]:
        return [call.texts for call in self.calls]

    def _load(self) -> Any:
        return _Recorded(super()._load(), self)


class _Recorded:
    def __init__(self, engine: Any, recorder: CallRecordingEmbedder) -> None:
        self._engine = engine
        self._recorder = recorder

    def embed(self, texts: list[str], is_query: bool) -> np.ndarray:
        recorder = self._recorder
        linux = sys.platform.startswith("linux")
        priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) if linux else None
        recorder.calls.append(EngineCall(list(texts), is_query, threading.current_thread().name, priority))
        recorder.running += 1
        recorder.most_at_once = max(recorder.most_at_once, recorder.running)
        try:
            return self._engine.embed(texts, is_query)
        finally:
            recorder.running -= 1


def test_bounded_batches() -> None:
    assert bounded_batches([], 4, 10) == []
    assert bounded_batches(["a", "b", "c"], 2, 100) == [["a", "b"], ["c"]]
    assert bounded_batches(["aaaa", "bbbb", "cc", "d"], 10, 6) == [["aaaa"], ["bbbb", "cc"], ["d"]]
    assert bounded_batches(["x" * 50, "y"], 10, 6) == [["x" * 50], ["y"]]  # one long text goes alone


async def test_each_lock_hold_is_bounded_and_long_inputs_are_cut() -> None:
    embedder = CallRecordingEmbedder()
    texts = [f"Paragraph {i}: " + "the weekly status call covered hiring and the roadmap. " * 16 for i in range(6)]
    vectors = await embedder.embed_passages(texts)
    query = await embedder.embed_query("status call " * 10_000)
    assert vectors.shape == (6, LOCAL_DIM) and query.shape == (LOCAL_DIM,)
    passage_holds, query_hold = embedder.holds[:-1], embedder.holds[-1]
    assert len(passage_holds) > 1
    assert all(len(hold) == 1 or sum(map(len, hold)) <= MAX_CHARS_PER_CALL for hold in passage_holds)
    assert [t for hold in passage_holds for t in hold] == [t[:MAX_EMBED_CHARS] for t in texts]
    assert len(query_hold) == 1 and len(query_hold[0]) == MAX_EMBED_CHARS


async def test_the_embedder_works_again_after_aclose() -> None:
    embedder = LocalEmbedder()
    first = await embedder.embed_query("Acme pays monthly.")
    await embedder.aclose()
    await embedder.aclose()  # twice is fine
    again = await embedder.embed_query("Acme pays monthly.")
    assert np.allclose(first, again, atol=1e-6)


async def test_an_idle_model_is_unloaded_and_the_next_call_loads_it_again() -> None:
    embedder = LocalEmbedder(idle_unload_s=0.0)
    first = await embedder.embed_query("Acme pays monthly.")
    await eventually(lambda: not embedder.loaded, what="the idle model to be unloaded")
    again = await embedder.embed_query("Acme pays monthly.")
    assert np.allclose(first, again, atol=1e-6)
    # Unloads between overlapping calls change no vector: a call never runs on a model being unloaded.
    texts = ["Acme pays monthly.", "Globex wants a quote.", "Initech renewed."]
    together = await asyncio.gather(embedder.embed_passages(texts), embedder.embed_query(texts[1]))
    kept = LocalEmbedder(idle_unload_s=None)
    assert np.allclose(together[0], await kept.embed_passages(texts), atol=1e-6)
    assert np.allclose(together[1], await kept.embed_query(texts[1]), atol=1e-6)
    await embedder.aclose()
    await kept.aclose()
    assert kept.loaded  # None: kept for the embedder's life


async def test_queries_and_passages_run_on_their_own_threads_never_at_once() -> None:
    embedder = CallRecordingEmbedder()
    long_passage = "The weekly call covered hiring, the roadmap and the Acme renewal terms. " * 12
    await asyncio.gather(
        *(embedder.embed_query(f"question {i} about the renewal terms and hiring") for i in range(8)),
        *(embedder.embed_passages([f"{i}: {long_passage}"]) for i in range(8)),
    )
    assert {call.thread for call in embedder.calls if call.is_query} == {"embedder-query_0"}
    assert {call.thread for call in embedder.calls if not call.is_query} == {"embedder-passages_0"}
    assert threading.current_thread().name not in {call.thread for call in embedder.calls}
    # The engine's lock: a query and a batch of passages are never embedded together.
    assert embedder.most_at_once == 1
    await embedder.aclose()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")
async def test_passages_are_embedded_at_a_lower_priority_than_the_bot_and_queries_are_not() -> None:
    embedder = CallRecordingEmbedder()
    await embedder.embed_query("Acme pays monthly.")
    await embedder.embed_passages(["Acme pays monthly."])
    main = os.getpriority(os.PRIO_PROCESS, threading.main_thread().native_id or 0)
    priorities = {call.is_query: call.priority for call in embedder.calls}
    assert priorities == {True: main, False: min(19, main + BACKGROUND_NICE)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main  # the caller is untouched
    await embedder.aclose()
