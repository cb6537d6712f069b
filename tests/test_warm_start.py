"""The test run's shared start (tests/warm_start.py) keeps what it promises: every test module's
rewritten asserts are cached before the workers collect, and coverage traces the tests after a
collection that this worker traced only in part."""

from __future__ import annotations

import sys

import pytest
from _pytest.assertion.rewrite import PYC_TAIL, _read_pyc, get_cache_dir

from tests.warm_start import REWRITTEN, ROOT, tracing_of


def test_every_test_modules_rewritten_asserts_are_cached() -> None:
    modules = [path for path in sorted((ROOT / "tests").rglob("*.py")) if REWRITTEN.search(path.as_posix())]
    uncached = [
        path.relative_to(ROOT)
        for path in modules
        if _read_pyc(path, get_cache_dir(path) / (path.name[:-3] + PYC_TAIL)) is None
    ]
    assert len(modules) > 200 and uncached == []


def test_coverage_traces_the_tests_after_the_collection(request: pytest.FixtureRequest) -> None:
    tracing = tracing_of(request.config)
    if tracing is None:
        pytest.skip("coverage is off (--no-cov)")
    assert sys.gettrace() is not None
    assert request.config.pluginmanager.has_plugin("shared-collection-trace") == hasattr(request.config, "workerinput")
