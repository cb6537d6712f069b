"""The test run's shared start (tests/warm_start.py) keeps what it promises: every test module's
rewritten asserts are cached before the workers collect, and coverage traces the tests after a
collection that this worker traced only in part."""

from __future__ import annotations

import os
import sys

import pytest
from _pytest.assertion.rewrite import PYC_TAIL, AssertionRewritingHook, _read_pyc, get_cache_dir

from tests.fakes.fork_server import SHARED, socket_path
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


def test_no_installed_library_is_assertion_rewritten() -> None:
    """The plugins are named in addopts, so pytest marks no installed package for rewriting: langsmith (pulled
    in by langgraph) and anyio load as plain modules, not through the rewriting import hook."""
    import anyio
    import langgraph.graph  # noqa: F401  (imports langsmith)
    import langsmith

    assert [m.__name__ for m in (langsmith, anyio) if isinstance(m.__loader__, AssertionRewritingHook)] == []


def test_a_worker_forks_through_the_runs_one_fork_server(request: pytest.FixtureRequest) -> None:
    if not hasattr(request.config, "workerinput"):
        pytest.skip("not distributed: this process starts a fork server of its own")
    assert socket_path() == os.environ[SHARED]
