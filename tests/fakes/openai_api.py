"""A fake OpenAI-compatible server (aiohttp, localhost) that scripts replies and tool calls.

As its own process (for benchmarks of a deployed bot), echoing at once, serving until SIGTERM/SIGINT:

    python -m tests.fakes.openai_api [--api-key K] [--port P] [--echo-limit N]

It prints ``ready <base_url>`` on stdout once listening, and adds ``GET /_fake/requests?after=N``:
the chat and embedding requests from index ``N`` on, each with its arrival time (see :func:`control_routes`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import signal
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.serving import serve


@dataclass
class Scripted:
    """One scripted answer: text, tool calls, or an HTTP error / delay."""

    content: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = 200
    delay_s: float = 0.0
    usage: bool = True
    drop: bool = False
    """Close the connection instead of answering."""
    call_ids: list[str] | None = None
    """The ids of ``tool_calls``, one each (None: a unique ``call_<request>_<index>``). Some
    OpenAI-compatible endpoints send empty ids (LM Studio) or ids that repeat."""
    raw_body: str | None = None
    """Answer 200 with this body as JSON content, whatever it is (an answer that cannot be read)."""
    finish_reason: str | None = None
    """Sent instead of "tool_calls"/"stop" (e.g. "length": the output was cut at the limit)."""
    raw_arguments: list[str] | None = None
    """The arguments text of ``tool_calls``, one each, sent as is (None: their dicts as JSON). Small models
    send JSON that does not parse."""
    error_message: str | None = None
    """The error's message when ``status`` is not 200 (None: ``scripted <status>``), e.g. an endpoint refusing
    a parameter it does not support."""
    hold: asyncio.Event | None = None
    """Answer only once this event is set (a test decides when a request ends, without a clock)."""
    prompt_tokens: int | None = None
    """``usage.prompt_tokens`` as sent (None: counted from the messages). Ollama counts only what fitted its
    context window: it cuts longer prompts without an error."""


class FakeOpenAI:
    """``async with FakeOpenAI() as llm``; ``llm.base_url`` goes into COO_LLM__BASE_URL.

    Replies come from the script queue; when it is empty the server echoes the last user
    message as ``echo: <text>`` (or ``default`` when set). Every request is kept in ``requests``.
    """

    def __init__(
        self, api_key: str = "sk-test-key-000000000000", *, port: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.api_key = api_key
        self.tls = tls
        """When set, the server speaks HTTPS with this context (``base_url`` says ``https``)."""
        self.requests: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        """``time.monotonic()`` when each of ``requests`` arrived (same index)."""
        self.script: deque[Scripted] = deque()
        self.default: Scripted | None = None
        # When set, chat requests are recorded, then held until the event is set (a test decides when they end).
        self.gate: asyncio.Event | None = None
        self.embedding_failures: list[int] = []
        """HTTP statuses the next embedding requests are answered with, one each."""
        # When set, decides the answer to each chat request from its body (None: the script, then the default).
        self.responder: Callable[[dict[str, Any]], Scripted | None] | None = None
        self.echo_limit: int | None = None
        """Echo at most this many characters of the user message (None: all of it)."""
        self.bill_tools = False
        """Count offered tool schemas into ``usage.prompt_tokens`` (as real endpoints do)."""
        self.control = False
        """True adds the ``/_fake/`` control API (the standalone process turns it on)."""
        self.basic_auth: tuple[str, str] | None = None
        """When set, ``Authorization: Basic`` with this user and password is accepted too (a gateway that
        takes credentials in its URL)."""
        self.extra_routes: list[web.RouteDef] = []
        """More ``/_fake/`` routes (e.g. the weak model's truth), added with the control API."""
        self._runner: web.AppRunner | None = None
        self.port = port

    @property
    def base_url(self) -> str:
        """The ``/v1`` root."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v1"

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
        if self.control:
            app.add_routes([*control_routes(self), *self.extra_routes])
        self._runner, self.port = await serve(app, self.port, tls=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorized(self, request: web.Request) -> bool:
        given = request.headers.get("Authorization")
        if self.basic_auth is not None and given == basic_header(*self.basic_auth):
            return True
        return given == f"Bearer {self.api_key}"

    async def _models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def _embeddings(self, request: web.Request) -> web.Response:
        """Bag-of-words vectors (1536-d, like text-embedding-3-small): texts sharing words are close."""
        arrived = time.monotonic()
        body = await request.json()
        body["_path"] = request.path
        body["_auth"] = request.headers.get("Authorization", "")
        self.requests.append(body)
        self.arrivals.append(arrived)
        if not self._authorized(request):
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        if self.gate is not None:
            await self.gate.wait()
        if self.embedding_failures:
            status = self.embedding_failures.pop(0)
            return web.json_response({"error": {"message": f"scripted {status}"}}, status=status)
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
        arrived = time.monotonic()
        body = await request.json()
        body["_path"] = request.path
        body["_auth"] = request.headers.get("Authorization", "")
        self.requests.append(body)
        self.arrivals.append(arrived)
        if not self._authorized(request):
            return web.json_response({"error": {"message": "bad key", "type": "auth"}}, status=401)
        if self.gate is not None:
            await self.gate.wait()
        routed = self.responder(body) if self.responder is not None else None
        step = routed or (self.script.popleft() if self.script else self.default)
        if step is None:
            step = Scripted(content=f"echo: {_last_user(body)[: self.echo_limit]}")
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if step.hold is not None:
            await step.hold.wait()
        if step.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if step.raw_body is not None:
            return web.Response(text=step.raw_body, content_type="application/json")
        if step.status != 200:
            return web.json_response(
                {"error": {"message": step.error_message or f"scripted {step.status}", "type": "server"}},
                status=step.status,
            )
        message: dict[str, Any] = {"role": "assistant", "content": step.content or None}
        if step.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{len(self.requests)}_{i}" if step.call_ids is None else step.call_ids[i],
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": json.dumps(args) if step.raw_arguments is None else step.raw_arguments[i],
                    },
                }
                for i, (name, args) in enumerate(step.tool_calls)
            ]
        answer: dict[str, Any] = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "finish_reason": step.finish_reason or _stop(step)}],
        }
        if step.usage:
            # About 4 characters a token; real endpoints also bill the tool schemas as prompt.
            billed = [*body["messages"], *(body.get("tools", []) if self.bill_tools else [])]
            prompt = sum(len(json.dumps(m)) for m in billed) // 4 if step.prompt_tokens is None else step.prompt_tokens
            answer["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": max(1, len(step.content) // 4),
                "total_tokens": prompt + max(1, len(step.content) // 4),
            }
        return web.json_response(answer)


def basic_header(user: str, password: str) -> str:
    """The ``Authorization`` value of HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _stop(step: Scripted) -> str:
    return "tool_calls" if step.tool_calls else "stop"


def _last_user(body: dict[str, Any]) -> str:
    last = next((m for m in reversed(body.get("messages", [])) if m.get("role") == "user"), {"content": ""})
    return str(last.get("content") or "")


# ---- standalone process: control API and entry point ------------------------------------------


def control_routes(llm: FakeOpenAI) -> list[web.RouteDef]:
    """``GET /_fake/requests?after=N``: requests from index ``N`` on, each as ``{"seq", "at", "path",
    "model", "last_user", "tools"}`` (``tools``: how many tool schemas were offered); ``next`` is the
    index to ask from next."""

    async def requests(request: web.Request) -> web.Response:
        after = int(request.query.get("after", 0))
        found = [
            {
                "seq": seq,
                "at": at,
                "path": body.get("_path", ""),
                "model": body.get("model"),
                "last_user": _last_user(body) if "messages" in body else "",
                "tools": len(body.get("tools", [])),
            }
            for seq, (body, at) in enumerate(zip(llm.requests[after:], llm.arrivals[after:], strict=True), start=after)
        ]
        return web.json_response({"requests": found, "next": len(llm.requests)})

    return [web.get("/_fake/requests", requests)]


def goals_script(tasks: int) -> Any:
    """A responder for goals: every goal gets a plan of ``tasks`` tasks (t1 first, t2..t(n-1) after it in
    parallel, the last after those), each task finishes at its first call, every check says "met"."""
    from tests.graph.goals.goal_helpers import Brain, met_verdict, plan, task

    skills = ("research", "draft", "records")
    keys = [f"t{i}" for i in range(1, tasks + 1)]
    steps = []
    for i, key in enumerate(keys):
        after = () if i == 0 else ((keys[0],) if i < tasks - 1 else tuple(keys[1:-1]) or (keys[0],))
        steps.append(task(key, skills[i % len(skills)], f"Step {i + 1}", after=after))
    return Brain(
        plans=[plan(*steps, criteria="every step reported")], verdict=met_verdict("done", "every step reported")
    )


def misbehaving(statuses: dict[str, int], delays: dict[str, float]) -> Callable[[dict[str, Any]], Scripted | None]:
    """A responder that answers the chat requests for some models (``*``: every model) with an HTTP status
    or after a delay, and the others as usual (an endpoint that is down, rate-limited or slow)."""

    def respond(body: dict[str, Any]) -> Scripted | None:
        model = str(body.get("model"))
        status = statuses.get(model, statuses.get("*"))
        delay = delays.get(model, delays.get("*", 0.0))
        if status is None and not delay:
            return None
        return Scripted(content=f"echo: {_last_user(body)}", status=status or 200, delay_s=delay)

    return respond


def _pairs(values: list[str], kind: Callable[[str], Any]) -> dict[str, Any]:
    """``["m=503", "429"]`` -> ``{"m": 503, "*": 429}``."""
    found = {}
    for value in values:
        model, _, amount = value.rpartition("=")
        found[model or "*"] = kind(amount)
    return found


async def _serve(
    api_key: str,
    port: int,
    echo_limit: int | None,
    goal_tasks: int | None = None,
    responder: Callable[[dict[str, Any]], Scripted | None] | None = None,
    weak: bool = False,
    weak_fault: str | None = None,
    answer: str | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    llm = FakeOpenAI(api_key, port=port)
    llm.control = True
    llm.echo_limit = echo_limit
    llm.bill_tools = True
    if goal_tasks:
        llm.responder = goals_script(goal_tasks)
    elif responder is not None:
        llm.responder = responder
    if weak or weak_fault:
        from tests.fakes.weak_model import WeakModel, truth_routes

        model = WeakModel(fault=weak_fault)
        llm.responder = model
        llm.extra_routes = truth_routes(model)
    if answer is not None:
        llm.default = Scripted(content=answer)
    async with llm:
        print(f"ready {llm.base_url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.fakes.openai_api [--api-key K] [--port P] [--echo-limit N]``: serve until SIGTERM."""
    parser = argparse.ArgumentParser(description="instant fake OpenAI-compatible API with a /_fake/ control API")
    parser.add_argument("--api-key", default="sk-test-key-000000000000", help="the only key it accepts")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument(
        "--echo-limit", type=int, default=None, help="echo at most N characters (a summary prompt is long)"
    )
    parser.add_argument(
        "--goal-tasks", type=int, default=None, help="answer planners with plans of N tasks (a goals benchmark)"
    )
    parser.add_argument(
        "--tool-calls", action="store_true", help="'call NAME {json}' gets that tool call (tests/fakes/tool_script.py)"
    )
    parser.add_argument(
        "--status", action="append", default=[], help="[MODEL=]STATUS: answer chat requests (for MODEL) with it"
    )
    parser.add_argument(
        "--delay", action="append", default=[], help="[MODEL=]SECONDS: answer chat requests (for MODEL) that late"
    )
    parser.add_argument(
        "--weak", action="store_true", help="answer as small real models do (tests/fakes/weak_model.py)"
    )
    parser.add_argument("--weak-fault", default=None, help="weak mode with this one fault for every goal ('ok': none)")
    parser.add_argument("--answer", default=None, help="answer every chat request with this text instead of an echo")
    args = parser.parse_args(argv)
    statuses, delays = _pairs(args.status, int), _pairs(args.delay, float)
    responder = misbehaving(statuses, delays) if statuses or delays else None
    if args.tool_calls:
        from tests.fakes.tool_script import tool_script

        responder = tool_script
    modes = (args.weak, args.weak_fault, args.answer)
    asyncio.run(_serve(args.api_key, args.port, args.echo_limit, args.goal_tasks, responder, *modes))


if __name__ == "__main__":
    main()
