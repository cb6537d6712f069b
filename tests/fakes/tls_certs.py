"""A throwaway certificate authority and a server certificate for 127.0.0.1, made with the ``openssl`` command at
test time (nothing is kept; ``.ci/run`` makes sure ``openssl`` is there)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


@dataclass(frozen=True)
class MadeCA:
    """The CA's certificate (give it to the client) and the server's certificate and key (give them to the server)."""

    ca: Path
    cert: Path
    key: Path


def _run(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)  # noqa: S603


def make_ca(folder: Path) -> MadeCA:
    """A CA and a certificate it signed for ``127.0.0.1`` and ``localhost``, valid for two days, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    _run(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=solo-coo test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder,
    )  # fmt: skip
    _run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=127.0.0.1", cwd=folder)  # fmt: skip
    (folder / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _run(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=folder,
    )  # fmt: skip
    return MadeCA(folder / "ca.pem", folder / "server.pem", folder / "server.key")
