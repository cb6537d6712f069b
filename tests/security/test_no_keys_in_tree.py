"""No committed file holds something shaped like a real credential (I4).

The fakes make their keys and secrets up at run time (``tests/fakes/stripe_api.made_up_key``,
``made_up_webhook_secret``, ``tests/fakes/telegram_api.made_up_token``) or use literals that cannot pass
for real ones (``sk-test-key-000000000000``, ``sk_test_wrong_key_000``). A literal that can (a provider's
prefix followed by a run of ten or more letters and digits mixed) fails this test, whoever it belongs to:
the fake Stripe once defaulted to Stripe's own published docs key behind a prefix, a webhook test signed
with a leetspeak secret, and an onboarding test used a BotFather-shaped token whose four-digit bot id
slipped past an 8-10 digit rule. Two tests then built such a token from literal pieces, which a scan for whole
literals cannot see; a Telegram token assembled from literals fails it too.
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
    r"[A-Za-z0-9_-]{10,}"
    r"|\b\d{1,20}:AA[A-Za-z0-9_-]{30,}"  # a Telegram bot token (a bot id of any length)
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)
# A Telegram token assembled from literals, which the shape above cannot see: a bot id and ":" in one literal and
# "AA..." in the next, or the id, ":AA" and part of the body in one literal and the rest added to it.
_SPLIT_TELEGRAM = re.compile(r"""\d{1,20}:(?:["']\s*\+\s*["']AA|AA[A-Za-z0-9_-]*["']\s*\+)""")
# What makes a body random-looking: one run of 10 or more with letters and digits mixed.
_RANDOM_RUN = re.compile(r"[A-Za-z0-9]{10,}")


def _looks_random(run: str) -> bool:
    return any(c.isalpha() for c in run) and any(c.isdigit() for c in run)


def key_like(text: str) -> list[str]:
    """The credential-shaped strings in ``text`` whose body looks random (a real key's does)."""
    found = []
    for match in _SHAPES.finditer(text):
        shape = match.group()
        telegram = ":AA" in shape  # that shape is specific enough; a real token's body may have no digit run
        if telegram or shape.startswith("-----BEGIN") or any(_looks_random(run) for run in _RANDOM_RUN.findall(shape)):
            found.append(shape)
    return found + _SPLIT_TELEGRAM.findall(text)


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


def _mixed(rng: random.Random, size: int) -> str:
    """A made-up body of ``size`` letters and digits, with both for certain."""
    return "a7" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(size - 2))


def test_the_scan_finds_a_real_looking_key_and_passes_the_fakes() -> None:
    rng = random.Random(7)
    body = "aZ9" + _mixed(rng, 24)  # upper, lower and digit for certain
    for prefix in ("sk_test_", "sk_live_", "rk_live_", "sk-", "xoxb-", "ghp_", "sk_test_fake_"):
        assert key_like(f'api_key = "{prefix}{body}"') == [prefix + body]
    # The shapes that once slipped into the tree, with bodies made up here (no value that was ever committed):
    # a short mixed body behind a prefix, and a BotFather-shaped token with a short bot id.
    for looks_real in (
        "whsec_test_" + _mixed(rng, 11),
        "sk_live_" + _mixed(rng, 12),
        f"{rng.randrange(1, 10_000)}:AA{_mixed(rng, 33)}",
        f"{rng.randrange(10**9, 10**10)}:AA{_mixed(rng, 33)}",
        f"{rng.randrange(10**9, 10**10)}:AA" + "".join(rng.choice(string.ascii_letters) for _ in range(33)),
    ):
        assert key_like(f'secret = "{looks_real}"') == [looks_real]
    # A token assembled from pieces, in both ways the tree once held (quoted here as source text, not built).
    bot = rng.randrange(10**8, 10**9)
    for assembled in (f'"{bot}:" + "AAH-"', f"'{bot}:AAF' + 'x_-9' * 8"):
        assert key_like(f"TOKEN = {assembled}") != []
    fakes = "sk-test-key-000000000000 sk_test_wrong_key_000 sk_test_bench_fake_key_0000000000 xoxb-slack-secret"
    assert key_like(fakes + " 123456789:BENCH-fake-token-not-secret whsec_someone_else xapp-1-A0-12345678") == []
