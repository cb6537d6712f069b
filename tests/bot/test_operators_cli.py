"""``coo pair`` and ``coo operators`` on their own (real SQLite in tmp_path, what they print): a printed code
pairs once; removing works only for paired operators and says why otherwise, changing nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.operators_cli import manage_operators, open_pairing
from memory.db import open_database
from memory.operators import OperatorStore
from tests.conftest import make_settings


async def paired(data_dir: Path) -> list[str]:
    async with open_database(data_dir) as db:
        return [op.identity for op in await OperatorStore(db).paired()]


async def pair_with_printed_code(data_dir: Path, identity: str, capsys: pytest.CaptureFixture[str]) -> str | None:
    settings = make_settings(data_dir)
    assert await open_pairing(settings) == 0
    code = re.search(r"pairing code: (\S+) ", capsys.readouterr().out)
    assert code is not None
    async with open_database(data_dir) as db:
        return await OperatorStore(db).redeem(code.group(1), identity)


async def test_a_printed_code_pairs_once_and_the_operator_is_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await pair_with_printed_code(tmp_path, "telegram:2002", capsys) == "cli"
    async with open_database(tmp_path) as db:
        assert await OperatorStore(db).redeem("anything", "telegram:3003") is None
    assert await manage_operators(make_settings(tmp_path), None) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[:2] == ["slack:T1:U1  (COO_OPERATORS)", "telegram:1001  (COO_OPERATORS)"]
    assert listing[2].startswith("telegram:2002  (paired ")


async def test_removing_a_paired_operator_ends_its_access(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await pair_with_printed_code(tmp_path, "telegram:2002", capsys)
    assert await manage_operators(make_settings(tmp_path), "telegram:2002") == 0
    assert capsys.readouterr().out == "removed telegram:2002; its access ended\n"
    assert await paired(tmp_path) == []


async def test_an_allow_listed_or_unknown_identity_is_not_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await pair_with_printed_code(tmp_path, "telegram:2002", capsys)
    settings = make_settings(tmp_path)
    assert await manage_operators(settings, "telegram:1001") == 1
    assert capsys.readouterr().out == "coo: telegram:1001 comes from COO_OPERATORS: remove it there and restart\n"
    assert await manage_operators(settings, "telegram:9999") == 1
    assert capsys.readouterr().out == "coo: telegram:9999 is not a paired operator\n"
    assert await paired(tmp_path) == ["telegram:2002"]


async def test_no_operators_says_how_to_get_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await manage_operators(make_settings(tmp_path, operators=""), None) == 0
    assert capsys.readouterr().out == "no operators yet: set COO_OPERATORS or run `coo pair`\n"
