"""No committed file holds something shaped like a real credential (I4).

The fakes make their keys up at run time (``tests/fakes/stripe_api.made_up_key``) or use literals that
cannot pass for real ones (``sk-test-key-000000000000``, ``sk_test_WRONGKEY000``). A literal that can —
a provider's prefix followed by a random-looking run of letters and digits — fails this test, whoever
it belongs to: the fake Stripe once defaulted to Stripe's own published docs key behind a prefix.
"""

from __future__ import annotations

import random
import re
import string
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A provider's prefix, then the key's body (letters, digits, _ and -).
_SHAPES = re.compile(
    r"(?:[sr]k_(?:live|test)_|pk_(?:live|test)_|whsec_|sk-(?:proj-)?|xox[abpr]-|xapp-|ghp_|github_pat_|AKIA)"
    r"[A-Za-z0-9_-]{16,}"
    r"|\b\d{8,10}:AA[A-Za-z0-9_-]{30,}"  # a Telegram bot token
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)
# What makes a body random-looking: one run of 16 or more with upper case, lower case and digits.
_RANDOM_RUN = re.compile(r"[A-Za-z0-9]{16,}")


def _looks_random(run: str) -> bool:
    return any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)


def key_like(text: str) -> list[str]:
    """The credential-shaped strings in ``text`` whose body looks random (a real key's does)."""
    found = []
    for match in _SHAPES.finditer(text):
        shape = match.group()
        if shape.startswith("-----BEGIN") or any(_looks_random(run) for run in _RANDOM_RUN.findall(shape)):
            found.append(shape)
    return found


def _committed_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name]


def test_no_committed_file_holds_a_key_shaped_string() -> None:
    files = _committed_files()
    assert len(files) > 100  # the checkout's files were read, not an empty list
    found = {}
    for path in files:
        if path.suffix in {".png", ".bin"} or not path.is_file():
            continue
        hits = key_like(path.read_text(errors="replace"))
        if hits:
            found[str(path.relative_to(ROOT))] = hits
    assert found == {}


def test_the_scan_finds_a_real_looking_key_and_passes_the_fakes() -> None:
    rng = random.Random(7)
    body = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(24))
    body = "aZ9" + body  # upper, lower and digit for certain
    for prefix in ("sk_test_", "sk_live_", "rk_live_", "sk-", "xoxb-", "ghp_", "sk_test_fake_"):
        assert key_like(f'api_key = "{prefix}{body}"') == [prefix + body]
    assert key_like("1234567890:AA" + body + "abcdefg") != []
    fakes = "sk-test-key-000000000000 sk_test_WRONGKEY000 sk_test_bench_fake_key_0000000000 xoxb-slack-secret"
    assert key_like(fakes + " 123456789:BENCH-fake-token-not-secret whsec_test_5up3rs3cr3t") == []
