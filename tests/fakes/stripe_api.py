"""A fake Stripe API (aiohttp, 127.0.0.1) for driving the real ``stripe`` SDK over real HTTP.

async with FakeStripe() as fake:
    settings = StripeSettings(api_key=fake.api_key, api_base_url=fake.api_base_url)
    fake.fail_next("invoices.send", 500)        # the next send answers 500 (stored for its key)
    fake.drop_next("invoices.send")             # processed and stored, then the connection is cut
    fake.forget_idempotency_keys()              # Stripe pruned its stored keys (it may after 24 h)

What it does like Stripe: form-encoded bodies as the SDK sends them (``a[b]=c``,
``lines[0][price_data][unit_amount]=...``); JSON objects shaped like Stripe's (customer, invoice with
number, status, total, hosted_invoice_url and a ``lines`` list object, list objects, balance, error
objects ``{"error": {"type", "code", "message"}}``); the response of every executed POST stored per
``Idempotency-Key`` and replayed for the same key with ``Idempotent-Replayed: true`` (errors such as a
500 or a 402 too; a 429, an authentication failure or a parameter error did not execute and is not
stored); the same key with a different request is answered with 400 ``idempotency_error``; wrong
state transitions are refused with 400 ``invalid_request_error`` (send on a draft, add_lines on a
finalized invoice, void of a paid one...); an invoice embeds its first 10 lines (``has_more`` when there
are more; ``GET /v1/invoices/{id}/lines`` lists them all); every executed send records an
``invoice.sent`` event, listed by ``GET /v1/events`` (newest first, ``type`` or ``types[]`` and ``created[gte]``
filters, ``starting_after`` pages); ``pay()`` records ``invoice.paid``, ``record_event()`` any other; ``deliver()``
POSTs an event to a webhook endpoint signed as Stripe signs (``Stripe-Signature: t=...,v1=HMAC-SHA256``).

Endpoint names for faults and counters: ``balance.retrieve``, ``customers.list``, ``customers.create``,
``customers.retrieve``, ``invoices.create``, ``invoices.retrieve``, ``invoices.list``,
``invoices.lines``, ``invoices.add_lines``, ``invoices.finalize``, ``invoices.send``, ``invoices.void``,
``events.list``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from tests.fakes.serving import serve

JSON = dict[str, Any]
# Answers given before an endpoint starts executing (rate limit, overloaded edge): never stored for a key.
_NOT_EXECUTED = (429, 503)
_SEGMENT = re.compile(r"\[([^\]]*)\]")


@dataclass
class Request:
    """One request the fake received. ``replayed``: answered from the idempotency store."""

    seq: int
    method: str
    endpoint: str
    path: str
    params: JSON
    key: str | None
    status: int = 0
    replayed: bool = False
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class _Fault:
    status: int  # 0: drop the connection after processing
    message: str
    code: str
    type: str


@dataclass(frozen=True)
class _Stored:
    fingerprint: str
    status: int
    body: JSON


class StripeFailure(Exception):
    """An error answer, shaped like Stripe's."""

    def __init__(self, status: int, type_: str, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.body: JSON = {"error": {"type": type_, "message": message}}
        if code:
            self.body["error"]["code"] = code
        if param:
            self.body["error"]["param"] = param


def _invalid(message: str, code: str | None = None, param: str | None = None) -> StripeFailure:
    return StripeFailure(400, "invalid_request_error", message, code, param)


def decode_form(pairs: list[tuple[str, str]]) -> JSON:
    """``[("lines[0][price_data][unit_amount]", "1200")]`` -> ``{"lines": [{"price_data": {"unit_amount": "1200"}}]}``.

    Values stay strings, as on the wire; ``a[]`` appends to a list.
    """
    root: JSON = {}
    for key, value in pairs:
        head = key.split("[", 1)[0]
        path = [head, *_SEGMENT.findall(key[len(head) :])]
        node: Any = root
        for i, part in enumerate(path):
            last = i == len(path) - 1
            name = str(len(node)) if part == "" else part
            if last:
                node[name] = value
            else:
                node = node.setdefault(name, {})
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _lists(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def _int(value: Any, param: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise _ParamError(_invalid(f"Invalid integer: {value}", "parameter_invalid_integer", param)) from None


def _bool(value: Any, param: str) -> bool:
    if str(value) not in ("true", "false"):
        raise _ParamError(_invalid(f"Invalid boolean: {value}", "parameter_invalid_boolean", param))
    return str(value) == "true"


def made_up_key() -> str:
    """A test-mode-shaped key made up per fake, so no key-shaped value sits in the tree."""
    return "sk_test_fake_" + secrets.token_hex(12)


def made_up_webhook_secret() -> str:
    """A webhook signing secret made up per run, for the same reason."""
    return "whsec_fake_" + secrets.token_hex(12)


class FakeStripe:
    """Fake Stripe on 127.0.0.1 with a free port; ``api_base_url`` goes into ``COO_STRIPE__API_BASE_URL``."""

    def __init__(self, api_key: str | None = None, *, port: int = 0) -> None:
        self.api_key = api_key or made_up_key()
        self.port = port
        self.account = "acct_1Fake"
        self.number_prefix = "C0FFEE42"
        self.customers: dict[str, JSON] = {}
        self.invoices: dict[str, JSON] = {}
        self.requests: list[Request] = []
        self.sent: list[str] = []
        """Invoice ids, once per send the fake executed (a replayed send is not a second one)."""
        self.voided: list[str] = []
        self.events: list[JSON] = []
        self._deleted_customers: set[str] = set()
        self._stored: dict[str, _Stored] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._ids = itertools.count(1)
        self._numbers = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()
        # Called with a POST right after it was executed and its answer stored, before the answer is
        # written: lets a test kill the client at that exact moment (the answer never arrives).
        self.on_processed: Callable[[Request], None] | None = None

    @property
    def api_base_url(self) -> str:
        """The API root (the SDK adds ``/v1/...``)."""
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeStripe:
        app = web.Application()
        app.router.add_route("*", "/v1/{tail:.*}", self._handle)
        self._runner, self.port = await serve(app, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- test controls ------------------------------------------------------------------------

    def fail_next(
        self, endpoint: str, status: int, times: int = 1, message: str | None = None, code: str | None = None
    ) -> None:
        """The next ``times`` calls of ``endpoint`` answer ``status`` without doing anything.

        A 429 or a 503 is not stored for its idempotency key (refused before anything executed); a 402 or a
        500 is stored and replayed for that key, like Stripe does.
        """
        type_ = {402: "card_error", 429: "invalid_request_error"}.get(status, "api_error")
        if 400 <= status < 500 and status not in (402, 429):
            type_ = "invalid_request_error"
        default = {
            402: "Your card was declined.",
            429: "Too many requests hit the API too quickly.",
        }.get(status, "An unknown error occurred")
        fault = _Fault(status, message or default, code or ("rate_limit" if status == 429 else ""), type_)
        self._faults.setdefault(endpoint, []).extend([fault] * times)

    def drop_next(self, endpoint: str, times: int = 1) -> None:
        """The next ``times`` calls of ``endpoint`` are executed and stored, then the connection is cut."""
        self._faults.setdefault(endpoint, []).extend([_Fault(0, "", "", "")] * times)

    def calls(self, endpoint: str) -> list[Request]:
        """Requests received for one endpoint, in order."""
        return [r for r in self.requests if r.endpoint == endpoint]

    def executed(self, endpoint: str) -> list[Request]:
        """Requests for one endpoint that were executed (not replayed, not refused before executing)."""
        return [r for r in self.calls(endpoint) if not r.replayed and r.status not in (401, *_NOT_EXECUTED)]

    def forget_idempotency_keys(self) -> None:
        """Stripe pruned every stored key (it may once a key is 24 h old): a reused key executes again."""
        self._stored.clear()

    def delete_customer(self, customer_id: str) -> None:
        """The customer was deleted (e.g. in the Dashboard): no longer listed; retrieve answers a deleted stub."""
        del self.customers[customer_id]
        self._deleted_customers.add(customer_id)

    def pay(self, invoice_id: str) -> JSON:
        """The customer paid (as the hosted invoice page would do); records and returns the ``invoice.paid`` event."""
        invoice = self.invoices[invoice_id]
        assert invoice["status"] == "open", invoice["status"]
        invoice.update(status="paid", paid=True, amount_paid=invoice["total"], amount_remaining=0)
        invoice["status_transitions"]["paid_at"] = int(time.time())
        return self.record_event("invoice.paid", self._view(invoice))

    def record_event(self, type_: str, obj: JSON, created: int | None = None) -> JSON:
        """Record an event about ``obj`` (listed by ``GET /v1/events``); returns it."""
        event = {
            "id": self._new_id("evt"),
            "object": "event",
            "api_version": "2026-10-29.clover",
            "type": type_,
            "created": int(time.time()) if created is None else created,
            "data": {"object": copy.deepcopy(obj)},
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None},
        }
        self.events.append(event)
        return event

    def signed(self, event: JSON, secret: str, at: int | None = None) -> tuple[bytes, str]:
        """A webhook delivery of ``event`` as Stripe signs it: (body, ``Stripe-Signature`` header)."""
        body = json.dumps(event).encode()
        stamp = int(time.time()) if at is None else at
        mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        return body, f"t={stamp},v1={mac}"

    async def deliver(self, url: str, event: JSON, secret: str, at: int | None = None) -> int:
        """POST ``event`` to a webhook endpoint, signed with ``secret``; returns the HTTP status."""
        body, signature = self.signed(event, secret, at)
        headers = {"Stripe-Signature": signature, "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as answer:
            return answer.status

    async def wait_requests(self, count: int, timeout: float = 10.0) -> list[Request]:  # noqa: ASYNC109
        """Wait until ``count`` requests have been answered."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.requests) >= count), timeout)
        return self.requests

    # ---- HTTP ---------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        pairs = parse_qsl(request.query_string, keep_blank_values=True)
        if request.method == "POST":
            pairs += parse_qsl((await request.read()).decode("utf-8"), keep_blank_values=True)
        params = decode_form(pairs)
        path = "/v1/" + request.match_info["tail"]
        route = self._route(request.method, path)
        endpoint = route[0] if route else f"{request.method} {path}"
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        req = Request(len(self.requests), request.method, endpoint, path, params, key)
        self.requests.append(req)
        try:
            status, body, replayed = await self._answer(request, req, route, pairs)
        except _Drop:
            req.status = 0
            await self._notify()
            assert request.transport is not None
            request.transport.abort()  # processed and stored; the client never hears back
            raise asyncio.CancelledError from None
        req.status, req.replayed = status, replayed
        if request.method == "POST" and self.on_processed is not None:
            self.on_processed(req)
        await self._notify()
        headers = {"Request-Id": f"req_{secrets.token_hex(7)}", "Stripe-Version": "2026-10-29.clover"}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        if key:
            headers["Idempotency-Key"] = key
        return web.json_response(body, status=status, headers=headers)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _answer(
        self, request: web.Request, req: Request, route: tuple[str, Callable[..., JSON], str | None] | None, pairs: Any
    ) -> tuple[int, JSON, bool]:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            shown = request.headers.get("Authorization", "").removeprefix("Bearer ")[:8]
            message = f"Invalid API Key provided: {shown}****" if shown else "You did not provide an API key."
            return 401, {"error": {"type": "invalid_request_error", "message": message}}, False
        faults = self._faults.get(req.endpoint) or []
        if faults and faults[0].status in _NOT_EXECUTED:
            edge = faults.pop(0)  # refused at the edge before anything ran: not stored for the key
            return edge.status, {"error": {"type": edge.type, "code": edge.code, "message": edge.message}}, False
        fingerprint = json.dumps([req.method, req.path, sorted(pairs)])
        if req.key and req.key in self._stored:
            stored = self._stored[req.key]
            if stored.fingerprint != fingerprint:
                message = (
                    "Keys for idempotent requests can only be used with the same parameters they were first used "
                    f"with. Try using a key other than '{req.key}' if you meant to execute a different request."
                )
                return 400, {"error": {"type": "idempotency_error", "message": message}}, False
            return stored.status, stored.body, True
        if route is None:
            message = f"Unrecognized request URL ({req.method}: {req.path})."
            return 404, {"error": {"type": "invalid_request_error", "message": message}}, False
        fault = faults.pop(0) if faults else None
        if fault is not None and fault.status:
            body: JSON = {"error": {"type": fault.type, "message": fault.message}}
            if fault.code:
                body["error"]["code"] = fault.code
            self._store(req, fingerprint, fault.status, body)
            return fault.status, body, False
        _, handler, target = route
        try:
            status, body = 200, handler(target, req.params) if target else handler(req.params)
        except _ParamError as exc:
            return exc.failure.status, exc.failure.body, False  # refused before executing: not stored
        except StripeFailure as exc:
            status, body = exc.status, exc.body
        self._store(req, fingerprint, status, body)
        if fault is not None:  # status 0: drop the connection now that it is done and stored
            raise _Drop
        return status, body, False

    def _store(self, req: Request, fingerprint: str, status: int, body: JSON) -> None:
        if req.key:
            self._stored[req.key] = _Stored(fingerprint, status, body)

    def _route(self, method: str, path: str) -> tuple[str, Callable[..., JSON], str | None] | None:
        parts = path.strip("/").split("/")[1:]
        table: dict[tuple[str, ...], tuple[str, Callable[..., JSON]]] = {
            ("GET", "balance"): ("balance.retrieve", self._balance),
            ("GET", "customers"): ("customers.list", self._list_customers),
            ("POST", "customers"): ("customers.create", self._create_customer),
            ("GET", "customers", "*"): ("customers.retrieve", self._get_customer),
            ("GET", "invoices"): ("invoices.list", self._list_invoices),
            ("POST", "invoices"): ("invoices.create", self._create_invoice),
            ("GET", "invoices", "*"): ("invoices.retrieve", self._get_invoice),
            ("GET", "invoices", "*", "lines"): ("invoices.lines", self._list_lines),
            ("GET", "events"): ("events.list", self._list_events),
            ("POST", "invoices", "*", "add_lines"): ("invoices.add_lines", self._add_lines),
            ("POST", "invoices", "*", "finalize"): ("invoices.finalize", self._finalize),
            ("POST", "invoices", "*", "send"): ("invoices.send", self._send),
            ("POST", "invoices", "*", "void"): ("invoices.void", self._void),
        }
        target = parts[1] if len(parts) > 1 else None
        shape = (method, parts[0], *(["*"] if len(parts) > 1 else []), *parts[2:])
        found = table.get(shape)
        return (found[0], found[1], target) if found else None

    # ---- objects ------------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{secrets.token_hex(6)}{next(self._ids):04d}"

    @staticmethod
    def _list(url: str, data: list[JSON]) -> JSON:
        return {"object": "list", "data": data, "has_more": False, "url": url}

    def _balance(self, params: JSON) -> JSON:
        zero = [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}]
        return {"object": "balance", "available": zero, "pending": zero, "livemode": False}

    def _list_customers(self, params: JSON) -> JSON:
        email = str(params.get("email", "")).lower()
        limit = _checked_limit(params)
        found = [c for c in self.customers.values() if not email or (c.get("email") or "").lower() == email]
        return self._list("/v1/customers", found[:limit])

    def _create_customer(self, params: JSON) -> JSON:
        _only(params, {"email", "name", "metadata", "description"})
        customer = {
            "id": self._new_id("cus"),
            "object": "customer",
            "created": int(time.time()),
            "email": params.get("email"),
            "name": params.get("name"),
            "description": params.get("description"),
            "metadata": params.get("metadata") or {},
            "livemode": False,
        }
        self.customers[str(customer["id"])] = customer
        return customer

    def _get_customer(self, customer_id: str, params: JSON) -> JSON:
        if customer_id in self._deleted_customers:
            return {"id": customer_id, "object": "customer", "deleted": True}
        if customer_id not in self.customers:
            message = f"No such customer: '{customer_id}'"
            raise StripeFailure(404, "invalid_request_error", message, "resource_missing", "id")
        return self.customers[customer_id]

    def _invoice(self, invoice_id: str) -> JSON:
        if invoice_id not in self.invoices:
            raise StripeFailure(404, "invalid_request_error", f"No such invoice: '{invoice_id}'", "resource_missing")
        return self.invoices[invoice_id]

    @staticmethod
    def _page(url: str, items: list[JSON], params: JSON) -> JSON:
        """One page of a list: ``limit`` items after ``starting_after``, ``has_more`` when more follow."""
        after = params.get("starting_after")
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else 0
        limit = _checked_limit(params)
        page = items[start : start + limit]
        return {"object": "list", "data": page, "has_more": start + limit < len(items), "url": url}

    def _view(self, invoice: JSON) -> JSON:
        """An invoice as Stripe answers it: a snapshot that embeds its first 10 lines."""
        view = copy.deepcopy(invoice)
        view["lines"] = self._page(invoice["lines"]["url"], view["lines"]["data"], {})
        return view

    def _list_invoices(self, params: JSON) -> JSON:
        customer = params.get("customer")
        found = [self._view(i) for i in self.invoices.values() if not customer or i["customer"] == customer]
        return self._list("/v1/invoices", found[: _checked_limit(params)])

    def _get_invoice(self, invoice_id: str, params: JSON) -> JSON:
        return self._view(self._invoice(invoice_id))

    def _list_lines(self, invoice_id: str, params: JSON) -> JSON:
        invoice = self._invoice(invoice_id)
        return self._page(invoice["lines"]["url"], invoice["lines"]["data"], params)

    def _list_events(self, params: JSON) -> JSON:
        type_ = params.get("type")
        types = params.get("types") or ([type_] if type_ else [])
        if isinstance(types, str) or (type_ and "types" in params):
            raise _ParamError(_invalid("Pass either type or types (an array), not both.", "parameter_invalid"))
        since = _int((params.get("created") or {}).get("gte", "0"), "created[gte]")
        found = [e for e in reversed(self.events) if (not types or e["type"] in types) and e["created"] >= since]
        return self._page("/v1/events", found, params)

    def _create_invoice(self, params: JSON) -> JSON:
        _only(
            params,
            {
                "customer",
                "collection_method",
                "due_date",
                "days_until_due",
                "currency",
                "pending_invoice_items_behavior",
                "auto_advance",
                "metadata",
                "description",
            },
        )
        customer_id = params.get("customer")
        if not customer_id:
            raise _ParamError(_invalid("Missing required param: customer.", "parameter_missing", "customer"))
        method = params.get("collection_method", "charge_automatically")
        if method not in ("charge_automatically", "send_invoice"):
            raise _ParamError(
                _invalid(f"Invalid collection_method: {method}", "parameter_invalid", "collection_method")
            )
        due_date = _int(params["due_date"], "due_date") if "due_date" in params else None
        if method == "send_invoice" and due_date is None and "days_until_due" not in params:
            raise _ParamError(
                _invalid("Invoices with collection_method=send_invoice need a due_date or days_until_due.")
            )
        if due_date is not None and due_date <= time.time():
            raise _ParamError(_invalid("The due_date must be in the future.", "parameter_invalid", "due_date"))
        behaviour = params.get("pending_invoice_items_behavior", "include")
        if behaviour not in ("include", "exclude"):
            raise _ParamError(_invalid("Invalid pending_invoice_items_behavior", "parameter_invalid"))
        currency = str(params.get("currency", "usd"))
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise _ParamError(_invalid(f"Invalid currency: {currency}", "parameter_invalid", "currency"))
        if customer_id not in self.customers:
            raise _invalid(f"No such customer: '{customer_id}'", "resource_missing", "customer")
        invoice_id = self._new_id("in")
        invoice: JSON = {
            "id": invoice_id,
            "object": "invoice",
            "customer": customer_id,
            "customer_email": self.customers[customer_id].get("email"),
            "customer_name": self.customers[customer_id].get("name"),
            "collection_method": method,
            "currency": currency,
            "due_date": due_date,
            "auto_advance": _bool(params.get("auto_advance", "false"), "auto_advance"),
            "pending_invoice_items_behavior": behaviour,
            "metadata": params.get("metadata") or {},
            "status": "draft",
            "number": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "paid": False,
            "subtotal": 0,
            "total": 0,
            "amount_due": 0,
            "amount_paid": 0,
            "amount_remaining": 0,
            "created": int(time.time()),
            "livemode": False,
            "lines": self._list(f"/v1/invoices/{invoice_id}/lines", []),
            "status_transitions": {"finalized_at": None, "paid_at": None, "voided_at": None},
        }
        self.invoices[invoice_id] = invoice
        return self._view(invoice)

    def _add_lines(self, invoice_id: str, params: JSON) -> JSON:
        invoice = self._invoice(invoice_id)
        lines = params.get("lines")
        if not isinstance(lines, list) or not lines:
            raise _ParamError(_invalid("Missing required param: lines.", "parameter_missing", "lines"))
        new = [self._line(invoice, i, line) for i, line in enumerate(lines)]
        if invoice["status"] != "draft":
            raise _invalid(
                f"You can only add lines to a draft invoice; this invoice is {invoice['status']}.",
                "invoice_not_editable",
            )
        invoice["lines"]["data"].extend(new)
        total = sum(line["amount"] for line in invoice["lines"]["data"])
        invoice.update(subtotal=total, total=total, amount_due=total, amount_remaining=total)
        return self._view(invoice)

    def _line(self, invoice: JSON, index: int, line: Any) -> JSON:
        param = f"lines[{index}]"
        if not isinstance(line, dict):
            raise _ParamError(_invalid(f"Invalid object: {param}", "parameter_invalid", param))
        quantity = _int(line.get("quantity", "1"), f"{param}[quantity]")
        price = line.get("price_data")
        if isinstance(price, dict):
            if price.get("currency") != invoice["currency"]:
                raise _ParamError(
                    _invalid(f"The price currency must be {invoice['currency']}.", "parameter_invalid", param)
                )
            name = (price.get("product_data") or {}).get("name")
            if not name:
                raise _ParamError(_invalid(f"Missing required param: {param}[price_data][product_data][name]."))
            unit = _int(price.get("unit_amount", ""), f"{param}[price_data][unit_amount]")
            amount = unit * quantity
        elif "amount" in line:
            unit, amount = _int(line["amount"], f"{param}[amount]"), _int(line["amount"], f"{param}[amount]")
        else:
            raise _ParamError(_invalid(f"{param} needs price_data or amount.", "parameter_missing", param))
        if quantity < 1 or unit < 0:
            raise _ParamError(_invalid(f"Invalid quantity or amount in {param}.", "parameter_invalid", param))
        return {
            "id": self._new_id("il"),
            "object": "line_item",
            "amount": amount,
            "currency": invoice["currency"],
            "description": line.get("description"),
            "quantity": quantity,
            "pricing": {"type": "price_details", "unit_amount_decimal": str(unit)},
            "invoice": invoice["id"],
        }

    def _finalize(self, invoice_id: str, params: JSON) -> JSON:
        _only(params, {"auto_advance", "expand"})
        invoice = self._invoice(invoice_id)
        if invoice["status"] != "draft":
            raise _invalid(
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.", "invoice_not_editable"
            )
        customer = self.customers[invoice["customer"]]
        if invoice["collection_method"] == "send_invoice" and not customer.get("email"):
            raise _invalid("The customer needs an email address to be sent an invoice.", "customer_email_missing")
        number = f"{self.number_prefix}-{next(self._numbers):04d}"
        invoice.update(
            status="open",
            number=number,
            hosted_invoice_url=f"{self.api_base_url}/i/{self.account}/{invoice_id}",
            invoice_pdf=f"{self.api_base_url}/i/{self.account}/{invoice_id}/pdf",
        )
        if "auto_advance" in params:
            invoice["auto_advance"] = _bool(params["auto_advance"], "auto_advance")
        invoice["status_transitions"]["finalized_at"] = int(time.time())
        return self._view(invoice)

    def _send(self, invoice_id: str, params: JSON) -> JSON:
        invoice = self._invoice(invoice_id)
        if invoice["status"] == "draft":
            raise _invalid("You can't send a draft invoice: finalize it first.", "invoice_not_finalized")
        if invoice["status"] == "void":
            raise _invalid("You can't send a void invoice.", "invoice_not_editable")
        if invoice["collection_method"] != "send_invoice":
            raise _invalid("Only invoices with collection_method=send_invoice can be sent.")
        self.sent.append(invoice_id)
        event = {
            "id": self._new_id("evt"),
            "object": "event",
            "type": "invoice.sent",
            "created": int(time.time()),
            "data": {"object": self._view(invoice)},
            "livemode": False,
        }
        self.events.append(event)
        return self._view(invoice)

    def _void(self, invoice_id: str, params: JSON) -> JSON:
        invoice = self._invoice(invoice_id)
        if invoice["status"] not in ("open", "uncollectible"):
            raise _invalid(
                f"You can only void an open or uncollectible invoice; this invoice is {invoice['status']}.",
                "invoice_not_editable",
            )
        invoice["status"] = "void"
        invoice["status_transitions"]["voided_at"] = int(time.time())
        self.voided.append(invoice_id)
        return self._view(invoice)


class _Drop(Exception):
    """Cut the connection without an answer."""


class _ParamError(Exception):
    """A request refused before it executed (bad parameters): Stripe stores nothing for its key."""

    def __init__(self, failure: StripeFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


def _only(params: JSON, allowed: set[str]) -> None:
    for name in params:
        if name not in allowed:
            raise _ParamError(_invalid(f"Received unknown parameter: {name}", "parameter_unknown", name))


def _checked_limit(params: JSON) -> int:
    limit = _int(params.get("limit", "10"), "limit")
    if not 1 <= limit <= 100:
        raise _ParamError(_invalid("limit must be between 1 and 100", "parameter_invalid", "limit"))
    return limit


async def _serve(api_key: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with FakeStripe(api_key, port=port) as fake:
        print(f"ready {fake.api_base_url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.fakes.stripe_api --api-key K [--port P]``: serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description="fake Stripe API")
    parser.add_argument("--api-key", required=True, help="the only key it accepts")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.api_key, args.port))


if __name__ == "__main__":
    main()
