"""A stand-in for a process the product starts itself (a fake MCP server over stdio). It hands its standard
streams, environment and directory to the test run's fork server (:mod:`tests.fakes.fork_server`), which
forks the real process from an interpreter that has imported it already; then it waits, and exits as the
child did.

    python -I -S tests/fakes/forked_command.py SOCKET MODULE ARGS...

Standard library only (the fork server's module gives the request's format), without site-packages: it starts
in milliseconds, where the fake MCP server's own start spends about 0.8 s of CPU importing the SDK. Whatever
ends this process ends the child too (it is tied to this process's connection), as a kill of the process
group the product started would.
"""

from __future__ import annotations

import os
import signal
import socket
import sys


def main() -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves this folder off the path
    from fork_server import request_bytes  # the server's own request format (standard library only)

    path, module, *args = sys.argv[1:]
    data = request_bytes(module, args, dict(os.environ), os.getcwd(), tied=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sent = socket.send_fds(sock, [data], [0, 1, 2])
    sock.sendall(data[sent:])
    # The child has the streams now. Our copies of stdin and stdout go, so the product sees the end of the
    # child's output when the child ends, not when this process does.
    quiet = os.open(os.devnull, os.O_RDWR)
    os.dup2(quiet, 0)
    os.dup2(quiet, 1)
    status = sock.makefile("rb")
    status.readline()  # the child's pid
    line = status.readline()
    if not line:
        return 1  # the fork server went away (its test worker ended)
    code = int(line)
    if code < 0:  # ended by a signal: end by the same one
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main())
