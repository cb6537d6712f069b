"""A real IMAP server for tests: Debian's Dovecot, run as an unprivileged process on a free loopback port.

Not a fake: the tests talk IMAP to Dovecot itself. Each server has its own directory (config, passwd-file
user, maildirs, sockets, log) and nothing is installed system-wide. Dovecot refuses to run its login
processes as root, so when the tests run as root (CI) the server runs as ``nobody`` in a directory that
``nobody`` owns. Mail is put in with IMAP APPEND, as a mail server would deliver it.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from imapclient import IMAPClient

USER = "coo"
PASSWORD = "imap-secret-7f3a"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

_CONFIG = """
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain
# A refused login is answered at once (Dovecot waits 2 s by default, and longer for each repeat: see anvil below).
auth_failure_delay = 0
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = {uid}
mail_location = maildir:{d}/mail/%u
# A message that lands between a client's last command and its IDLE is not reported in that IDLE (not at its
# re-checks either; the intake finds it at its next check, docs/inbox.md). Tests that expect mail through IDLE
# add it once the session is in IDLE, which the process title shows (Dovecot.idling).
verbose_proctitle = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
  # No growing delay for repeated refused logins from one address (Dovecot's auth penalty: 2 s, 4 s, ...).
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def available() -> bool:
    """True when Dovecot is installed (``.ci/run`` installs it)."""
    return Path(DOVECOT).exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Dovecot:
    """One running Dovecot; :meth:`client` gives a logged-in IMAPClient for putting mail in."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        """``tls``: a certificate and its key (PEM): the server then offers STARTTLS on :attr:`port` and implicit
        TLS on :attr:`tls_port`."""
        self.port = _free_port()
        self.tls_port = _free_port() if tls else 0
        self._tls = tls
        self.dir = Path(tempfile.mkdtemp(prefix="coo-dovecot-"))
        self._proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            account = pwd.getpwnam("nobody")
            self._uid, self._gid = account.pw_uid, account.pw_gid
        else:
            self._uid, self._gid = os.getuid(), os.getgid()
        self._user = pwd.getpwuid(self._uid).pw_name
        self._group = grp.getgrgid(self._gid).gr_name

    def start(self) -> None:
        """Write the config and start the server; returns once it answers on its port."""
        d = self.dir
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir()
        (d / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        ssl = "ssl = no"
        if self._tls:
            for name, source in zip(("cert.pem", "key.pem"), self._tls, strict=True):
                shutil.copyfile(source, d / name)
            ssl = f"ssl = yes\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem"
        values = {"user": self._user, "group": self._group, "uid": self._uid, "gid": self._gid}
        (d / "dovecot.conf").write_text(_CONFIG.format(d=d, port=self.port, tls_port=self.tls_port, ssl=ssl, **values))
        d.chmod(0o755)
        for path in [d, *d.rglob("*")]:
            os.chown(path, self._uid, self._gid)
        self._launch()

    def halt(self) -> None:
        """Stop the server (every open connection drops); :meth:`relaunch` brings it back, mail kept."""
        assert self._proc is not None
        self._proc.terminate()
        self._proc.wait(10)
        if self._proc.stderr:
            self._proc.stderr.close()

    def relaunch(self) -> None:
        """Start the server again on the same port and mail."""
        self._launch()

    def _launch(self) -> None:
        d = self.dir
        as_other = {"user": self._uid, "group": self._gid, "extra_groups": []} if os.geteuid() == 0 else {}
        self._proc = subprocess.Popen(  # noqa: S603
            [DOVECOT, "-F", "-c", str(d / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **as_other,  # type: ignore[arg-type]
        )
        deadline = time.monotonic() + 20
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self._proc.stderr.read().decode() if self._proc.stderr else ''}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                if s.recv(64).startswith(b"* OK"):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"dovecot did not answer: {self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        """The server's log (for failure messages)."""
        path = self.dir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop the server, and remove its directory once it is gone.

        Dovecot's master sleeps a fixed second on its way out (for its log process), so the waiting and the
        removal go on in a thread of their own: the next test need not wait. The thread is not a daemon: the
        worker's exit still waits for it, and nothing is left behind.
        """
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
        threading.Thread(target=self._reap, name="dovecot-stop").start()

    def _reap(self) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stderr:
                self._proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @contextlib.contextmanager
    def client(self) -> Iterator[IMAPClient]:
        """A logged-in client (blocking: call from a thread in async tests)."""
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(USER, PASSWORD)
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def append(self, raw: bytes, folder: str = "INBOX") -> int:
        """Deliver ``raw`` into ``folder`` (created if missing); returns its UID."""
        with self.client() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            answer = client.append(folder, raw)
        # "[APPENDUID <validity> <uid>] Append completed."
        return int(answer.split(b"]")[0].split()[-1])

    def append_many(self, raws: list[bytes], folder: str = "INBOX") -> None:
        """Deliver many messages over one connection."""
        with self.client() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for raw in raws:
                client.append(folder, raw)

    def recreate(self, folder: str) -> None:
        """Delete and create ``folder`` again: its UIDVALIDITY changes and its UIDs start over."""
        with self.client() as client:
            client.delete_folder(folder)
            client.create_folder(folder)

    def idling(self) -> bool:
        """True while one of this server's IMAP sessions is in IDLE (its process title, ``verbose_proctitle``)."""
        assert self._proc is not None
        master = self._proc.pid
        with contextlib.suppress(OSError):  # the server is gone: nothing idles
            for child in Path(f"/proc/{master}/task/{master}/children").read_text().split():
                with contextlib.suppress(OSError):  # that session ended while it was read
                    title = Path(f"/proc/{child}/cmdline").read_bytes()
                    if title.startswith(b"dovecot/imap [") and b" IDLE]" in title:
                        return True
        return False

    def flags(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        """Every message's flags (to prove intake changes none)."""
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            return {uid: tuple(data[b"FLAGS"]) for uid, data in client.fetch(uids, ["FLAGS"]).items()}
