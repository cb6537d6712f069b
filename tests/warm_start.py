"""The test run's start, made cheap: what each test worker would do again, done once or shared.

Every xdist worker imports every test module to collect the suite.
- Where PYTHONDONTWRITEBYTECODE is set (this machine's shell, many containers) nothing compiled is kept,
  so each worker, and each ``coo`` process a test starts, compiled it all again: ``compile_once``.
- Under coverage's tracer Python 3.11 runs that collection about twice as slowly, and each worker traced
  all of it: ``SharedCollectionTrace``.
The suite's first test started at about 25 s before (three workers), at 12-16 s after (four).
"""

from __future__ import annotations

import compileall
import os
import re
import traceback
from typing import Any

import pytest
from _pytest.assertion.rewrite import (  # pytest is pinned; these are what its import hook itself calls
    PYC_TAIL,
    _read_pyc,
    _rewrite_test,
    _write_pyc,
    assertstate_key,
    get_cache_dir,
    try_makedirs,
)

from tests.layout import PACKAGES, ROOT

# What pytest rewrites (its `python_files` and conftests); the rest of tests/ is imported as usual.
REWRITTEN = re.compile(r"(^|/)(test_[^/]*|conftest)\.py$")


def compile_once(config: pytest.Config) -> None:
    """Byte-compile the project and the tests' helpers, and cache the tests' rewritten asserts.

    The project is installed editable, so pip compiled none of it: every ``coo`` process a test starts
    compiled it again (0.3-0.7 s of CPU per start). compileall writes the caches whatever
    PYTHONDONTWRITEBYTECODE says. pytest's import hook reads a cached rewritten module even where it may
    not write one, so writing them here spares each worker rewriting every test module's asserts.

    When the tests are distributed this runs in a child process, beside the workers' start (~2.4 s of CPU
    on a fresh checkout, while the controller would only wait for its workers); the first worker to finish
    collecting waits for it, so no test runs before it is done. Every cache file is written whole
    (compileall and pytest rename a finished file into place), so a worker that gets there first compiles
    that module itself and reads nothing half-written.
    """
    if not distributed(config):
        _compile(config)
        return
    pid = os.fork()
    if pid == 0:  # the child: compile, then leave without any of the controller's exit handlers
        code = 1
        try:
            _compile(config)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    config.pluginmanager.register(_CompileChild(pid), "warm-start-compile")


def distributed(config: pytest.Config) -> bool:
    """Whether xdist runs the tests in workers (as `-n 4` does, unless only collecting)."""
    workers = bool(config.getoption("tx", None))
    return config.getoption("dist", "no") != "no" and workers and not config.getoption("collectonly")


def _compile(config: pytest.Config) -> None:
    tracing = tracing_of(config)
    if tracing is not None:
        tracing.pause()  # compiling and rewriting run no project code: nothing to measure
    try:
        compileall.compile_dir(ROOT / "tests", rx=REWRITTEN, quiet=1)
        _rewrite_tests(config)
        for package in PACKAGES:
            compileall.compile_dir(ROOT / package, quiet=1)
    finally:
        if tracing is not None:
            tracing.resume()


class _CompileChild:
    """The controller's side of the compiling child: waited for before the first test, and at the end."""

    def __init__(self, pid: int) -> None:
        self._pid: int | None = pid

    def wait(self) -> None:
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if code != 0:
            raise RuntimeError(f"compiling the suite before the tests failed (exit {code}); its error is above")

    def pytest_xdist_node_collection_finished(self) -> None:
        self.wait()

    def pytest_unconfigure(self) -> None:
        self.wait()


def _rewrite_tests(config: pytest.Config) -> None:
    state = config.stash.get(assertstate_key, None)
    if state is None:  # --assert=plain: nothing is rewritten
        return
    for source in sorted((ROOT / "tests").rglob("*.py")):
        if not REWRITTEN.search(source.as_posix()):
            continue
        cache = get_cache_dir(source)
        pyc = cache / (source.name[:-3] + PYC_TAIL)
        if _read_pyc(source, pyc) is not None or not try_makedirs(cache):
            continue
        source_hash, code = _rewrite_test(source, config)
        _write_pyc(state, code, source_hash, pyc)


def tracing_of(config: pytest.Config) -> Any:
    """This process's coverage collector, or None when coverage is off.

    Paused and resumed through the collector, not ``Coverage.stop()``: that pops it and resumes the one
    under it (pytest-cov starts a second Coverage in each worker), so tracing would go on.
    """
    plugin = config.pluginmanager.get_plugin("_cov")
    if plugin is None or plugin.cov_controller is None:
        return None
    return plugin.cov_controller.cov._collector


class SharedCollectionTrace:
    """Each test worker traces its share of the suite's collection; together they trace all of it.

    Every xdist worker collects the whole suite, and collection runs the same code in the same order in
    each: every test module is imported, and the product and its libraries through them. Traced, Python
    3.11 runs that about twice as slowly. So worker *i* of *n* traces only the test modules whose place in
    the collection order is *i* modulo *n*, and the first worker also traces everything outside a module's
    import (directories, conftests, classes). Each line collection runs is thus traced by one worker, and
    the report combines every worker's lines: the figure is the same as when each traced all of it.
    """

    def __init__(self, worker: int, workers: int) -> None:
        self._worker = worker
        self._workers = workers
        self._modules = 0
        self._tracing: Any = None

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session) -> Any:
        self._tracing = tracing_of(session.config)
        if self._tracing is None:
            return (yield)
        first = self._worker == 0
        if not first:
            self._trace(False)
        try:
            return (yield)
        finally:
            if not first:
                self._trace(True)
            self._tracing = None

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(self, collector: pytest.Collector) -> Any:
        if self._tracing is None or not isinstance(collector, pytest.Module):
            return (yield)
        mine = self._modules % self._workers == self._worker
        self._modules += 1
        if mine == (self._worker == 0):  # traced already, or untraced already
            return (yield)
        self._trace(mine)
        try:
            return (yield)
        finally:
            self._trace(not mine)

    def _trace(self, on: bool) -> None:
        if on:
            self._tracing.resume()
        else:
            self._tracing.pause()


def share_collection_tracing(config: pytest.Config) -> None:
    """In an xdist worker, trace only this worker's share of the collection (see SharedCollectionTrace)."""
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        index = int(worker["workerid"].removeprefix("gw"))
        config.pluginmanager.register(SharedCollectionTrace(index, worker["workercount"]), "shared-collection-trace")
