"""A real SMTP server (aiosmtpd) on localhost that counts deliveries and can misbehave on purpose."""

from __future__ import annotations

import asyncio
import email
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller

Mode = Literal["ok", "tempfail", "permfail", "drop_after_data", "slow_ack", "hold"]


@dataclass
class Delivered:
    """One message the server accepted (or received before it misbehaved)."""

    mail_from: str
    rcpt_tos: list[str]
    message: Message

    @property
    def body(self) -> str:
        payload = self.message.get_payload(decode=True)
        assert isinstance(payload, bytes)
        return payload.decode("utf-8").replace("\r\n", "\n").strip("\n")


@dataclass
class _Handler:
    owner: SMTPServer

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        owner = self.owner
        mode = owner.modes.pop(0) if owner.modes else owner.default_mode
        if mode == "tempfail":
            return "451 4.3.0 try again later"
        if mode == "permfail":
            return "554 5.7.1 rejected"
        owner.record(envelope)
        if mode == "drop_after_data":
            # The message reached us, but the client never hears "250": an ambiguous outcome.
            session.peer and server.transport.close()
            await asyncio.sleep(0.2)
            return "250 OK"
        if mode == "slow_ack":
            await asyncio.sleep(owner.slow_ack_s)
        if mode == "hold":  # the message is in; "250" waits until the test calls release()
            await asyncio.get_running_loop().run_in_executor(None, owner.released.wait)
        return "250 OK"


@dataclass
class SMTPServer:
    """``with SMTPServer() as smtp``: ``smtp.port``, ``smtp.delivered``, ``smtp.modes`` (a queue)."""

    default_mode: Mode = "ok"
    modes: list[Mode] = field(default_factory=list)
    slow_ack_s: float = 5.0
    released: threading.Event = field(default_factory=threading.Event)
    """Lets messages held by the "hold" mode be acknowledged (set by :meth:`release`)."""
    delivered: list[Delivered] = field(default_factory=list)
    port: int = 0
    tls: ssl.SSLContext | None = None
    """When set, the server offers STARTTLS with this context and takes no mail before it."""
    _controller: Controller | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> SMTPServer:
        self.port = self.port or free_port()
        tls = {"tls_context": self.tls, "require_starttls": True} if self.tls else {}
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **tls)
        self._controller.start()
        return self

    def release(self) -> None:
        """Acknowledge every message held by the "hold" mode, now and from now on."""
        self.released.set()

    def __exit__(self, *exc: object) -> None:
        self.released.set()  # a held session must not keep the server from stopping
        if self._controller is not None:
            self._controller.stop()

    def record(self, envelope: Any) -> None:
        with self._lock:
            self.delivered.append(
                Delivered(envelope.mail_from, list(envelope.rcpt_tos), email.message_from_bytes(envelope.content))
            )

    def settings(self, **extra: Any) -> dict[str, Any]:
        """COO_SMTP__* values pointing here."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "from_addr": "me@example.org",
            "security": "none",
            "timeout_s": 2.0,
            **extra,
        }

    async def wait_delivered(self, count: int, timeout: float = 5.0) -> list[Delivered]:
        deadline = time.monotonic() + timeout
        while len(self.delivered) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} deliveries, got {len(self.delivered)}")
            await asyncio.sleep(0.02)
        return self.delivered


def free_port() -> int:
    """A port nobody listens on right now, for a server a test starts next, below the kernel's ephemeral range.

    Not ``bind(0)``: that hands out a port of the ephemeral range, and until the test's server binds it
    any outgoing connection on the machine may be given it as its local port (the kernel draws those from
    the same range). With four test workers that happened: the web console could not listen.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = _ports.randrange(max(1024, low - 12_000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port below {low}")


_ports = random.Random()  # seeded per process from the OS: each worker picks its own ports


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default
