"""The fake SMTP server's module also picks ports for the servers tests start (``free_port``)."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.fakes.smtp_server import free_port


def test_a_free_port_lies_below_the_ephemeral_range_and_can_be_bound() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(1024 <= port < low for port in ports) and len(ports) > 1  # random, not one port for all
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports.pop()))
