"""This install's secret and public id: what makes digests unforgeable and ids unique to one install.

The secret is 32 random bytes, written at the first start into ``<COO_DATA_DIR>/install.key`` (mode
0600, created exclusively so two processes starting together agree on one). It is never logged (its
``repr`` hides it), never put in an export, and never leaves this process except through the HMACs
made with it.

- **Action digests** stored on approvals and outbox rows are ``HMAC-SHA256(secret, content digest)``
  (:meth:`Install.seal`), where the content digest is ``Action.digest()`` (SHA-256 of the action's
  canonical JSON). Whoever writes a file without the secret (a crafted export) cannot make a digest
  this install accepts: an approval or outbox row whose digest does not verify never executes,
  resends or counts as a known target.
- **The install id** (:attr:`Install.id`, 16 hex characters, public) is derived from the secret. It is
  mixed into approval ids made from chat and update ids (:meth:`Install.scoped`), and through them into
  idempotency keys (Stripe) and email Message-IDs, so two installs never produce the same ones.

A data dir from before this existed has action digests without a key: the first start keys them once
(``memory.approvals.ApprovalStore.setup``), in one transaction with a marker, so it never happens again
(not even to rows an import brings later). Deleting ``install.key`` makes a new install: cards and
queued actions made under the old key stop verifying and fail closed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from memory.errors import UserFacingError

KEY_FILE = "install.key"
_KEY_BYTES = 32
_NOT_A_KEY = (
    "not an install key; put back the one this data dir had, or move it away to start as a new install "
    "(cards and queued actions made under the old key then fail closed)"
)


class InstallKeyError(UserFacingError):
    """The install key file is unreadable or not a key; the message names the file."""


class Install:
    """This install's secret (hidden) and its public id."""

    __slots__ = ("_key", "id")

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise ValueError("an install key is 32 bytes")
        self._key = key
        self.id = hmac.new(key, b"solo-coo install id", hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Install(id={self.id!r})"

    def seal(self, content_digest: str) -> str:
        """The digest stored for an action whose content digest (``Action.digest()``) is this."""
        return hmac.new(self._key, content_digest.encode("ascii"), hashlib.sha256).hexdigest()

    def verifies(self, content_digest: str, stored: str) -> bool:
        """Whether ``stored`` is this install's seal of ``content_digest`` (constant time)."""
        return hmac.compare_digest(self.seal(content_digest), stored)

    def scoped(self, name: str) -> str:
        """The approval id for a proposal named ``name`` (a hash of chat, update, turn...) on this install:
        12 hex characters like the name, different on every install."""
        return hashlib.sha256(f"{self.id}\x00{name}".encode()).hexdigest()[:12]

    def write(self, data_dir: Path) -> None:
        """Write this key as ``data_dir``'s install key (0600); FileExistsError when it has one.

        Written whole under another name, then linked into place: a reader never sees half a key."""
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = data_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(self._key.hex() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.link(temporary, data_dir / KEY_FILE)
        finally:
            temporary.unlink(missing_ok=True)


def read_key(path: Path) -> Install:
    """The install whose key is in ``path``; InstallKeyError naming the file otherwise."""
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InstallKeyError(f"{path}: {_NOT_A_KEY} ({type(exc).__name__})") from None
    if len(key) != _KEY_BYTES:
        raise InstallKeyError(f"{path}: {_NOT_A_KEY} (wrong length)")
    return Install(key)


def load_install(data_dir: Path) -> Install:
    """This data dir's install, its key created at the first start."""
    path = data_dir / KEY_FILE
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process created it first: use that one
            Install(secrets.token_bytes(_KEY_BYTES)).write(data_dir)
    return read_key(path)


def content_digest(action: dict[str, Any]) -> str:
    """``Action.digest()`` of an action stored as its JSON (``model_dump(mode="json")``)."""
    canonical = json.dumps(action, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
