"""The longest-first order of the suite's files (tests/schedule.py)."""

from __future__ import annotations

import pytest

from tests.schedule import LONGEST_FIRST
from tests.warm_start import ROOT


def test_every_listed_file_exists_once() -> None:
    assert [path for path in LONGEST_FIRST if not (ROOT / path).is_file()] == []
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)


def test_the_listed_files_come_first_in_their_order_and_each_files_tests_stay_together(
    request: pytest.FixtureRequest,
) -> None:
    files = [item.nodeid.split("::", 1)[0] for item in request.session.items]
    order = list(dict.fromkeys(files))
    listed = [path for path in LONGEST_FIRST if path in order]  # those selected in this run
    assert order[: len(listed)] == listed
    assert len(order) == len({*files})  # no file's tests are split
