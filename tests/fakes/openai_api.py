"""A fake OpenAI-compatible server (aiohttp, localhost) that scripts replies and tool calls."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Scripted:
    """One scripted answer: text, tool calls, or an HTTP error / delay."""

    content: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = 200
    delay_s: float = 0.0
    usage: bool = True


class FakeOpenAI:
    """``async with FakeOpenAI() as llm``; ``llm.base_url`` goes into COO_LLM__BASE_URL.

    Replies come from the script queue; when it is empty the server echoes the last user
    message as ``echo: <text>`` (or ``default`` when set). Every request is kept in ``requests``.
    """

    def __init__(self, api_key: str = "sk-test-key-000000000000") -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.script: deque[Scripted] = deque()
        self.default: Scripted | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        """The ``/v1`` root."""
        return f"http://127.0.0.1:{self.port}/v1"

    def reply(self, content: str = "", **kwargs: Any) -> None:
        """Queue one answer."""
        self.script.append(Scripted(content=content, **kwargs))

    def tool_call(self, name: str, args: dict[str, Any]) -> None:
        """Queue one answer that calls a tool."""
        self.script.append(Scripted(tool_calls=[(name, args)]))

    def fail(self, status: int, times: int = 1) -> None:
        """Queue ``times`` HTTP errors."""
        for _ in range(times):
            self.script.append(Scripted(status=status))

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """Bodies of chat completion requests."""
        return [r for r in self.requests if r.get("_path", "").endswith("/chat/completions")]

    async def __aenter__(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def _embeddings(self, request: web.Request) -> web.Response:
        """Bag-of-words vectors (1536-d, like text-embedding-3-small): texts sharing words are close."""
        body = await request.json()
        body["_path"] = request.path
        body["_auth"] = request.headers.get("Authorization", "")
        self.requests.append(body)
        if not self._authorized(request):
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(texts):
            vector = [0.0] * 1536
            for word in str(text).lower().split():
                vector[int(hashlib.sha256(word.strip("?.,!").encode()).hexdigest(), 16) % 1536] += 1.0
            norm = sum(v * v for v in vector) ** 0.5 or 1.0
            data.append({"object": "embedding", "index": i, "embedding": [v / norm for v in vector]})
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        )

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        body["_path"] = request.path
        body["_auth"] = request.headers.get("Authorization", "")
        self.requests.append(body)
        if not self._authorized(request):
            return web.json_response({"error": {"message": "bad key", "type": "auth"}}, status=401)
        step = self.script.popleft() if self.script else self.default
        if step is None:
            last = next((m for m in reversed(body["messages"]) if m["role"] == "user"), {"content": ""})
            step = Scripted(content=f"echo: {last['content']}")
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if step.status != 200:
            return web.json_response(
                {"error": {"message": f"scripted {step.status}", "type": "server"}}, status=step.status
            )
        message: dict[str, Any] = {"role": "assistant", "content": step.content or None}
        if step.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{len(self.requests)}_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for i, (name, args) in enumerate(step.tool_calls)
            ]
        answer: dict[str, Any] = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if step.tool_calls else "stop"}],
        }
        if step.usage:
            prompt = sum(len(json.dumps(m)) for m in body["messages"]) // 4
            answer["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": max(1, len(step.content) // 4),
                "total_tokens": prompt + max(1, len(step.content) // 4),
            }
        return web.json_response(answer)
