"""The install secret: made once per data dir, private, never shown, and the same for everyone who opens it."""

from __future__ import annotations

import logging
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from memory.db import open_database
from memory.install import KEY_FILE, Install, InstallKeyError, load_install, read_key


async def test_the_first_open_makes_a_private_key_and_every_later_open_reads_the_same(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        first = db.install
    mode = stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode)
    assert mode == 0o600
    async with open_database(tmp_path) as db:
        assert db.install.id == first.id
    assert len(first.id) == 16 and first.seal("a" * 64) != load_install(tmp_path / "other").seal("a" * 64)


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        installs = list(pool.map(load_install, [tmp_path] * 8))
    assert len({i.id for i in installs}) == 1
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary file left behind


def test_the_secret_never_shows_in_a_repr_or_a_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    install = load_install(tmp_path)
    secret = (tmp_path / KEY_FILE).read_text().strip()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("install %s %r", install, install)
    assert secret not in caplog.text and install.id in caplog.text
    assert secret not in repr(install) and not hasattr(install, "__dict__")


def test_a_damaged_key_stops_with_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("not hex\n")
    with pytest.raises(InstallKeyError) as caught:
        load_install(tmp_path)
    assert str(tmp_path / KEY_FILE) in str(caught.value) and "\n" not in str(caught.value)
    (tmp_path / KEY_FILE).write_text("ab" * 16 + "\n")  # hex, but half a key
    with pytest.raises(InstallKeyError, match="wrong length"):
        read_key(tmp_path / KEY_FILE)


def test_seals_verify_only_with_their_own_key() -> None:
    one, two = Install(b"\x01" * 32), Install(b"\x02" * 32)
    content = "c" * 64
    assert one.verifies(content, one.seal(content))
    assert not two.verifies(content, one.seal(content))
    assert not one.verifies(content, content)  # an unkeyed digest, as a hand-made file would hold
    assert one.scoped("abc123") != two.scoped("abc123")
