"""The encoder graph kept on disk: reused without a rebuild, the same vectors as a fresh build, rebuilt over a
bad entry, never needed (an unwritable folder still loads), and named by everything the graph depends on."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bot.settings import APP_NAME
from memory.semantic.e5_cache import APP_NAME as CACHE_APP_NAME
from memory.semantic.e5_cache import KEEP_ENTRIES, STALE_TEMP_S, GraphCache, user_cache_dir
from memory.semantic.e5_graph import GraphSource, build_encoder_graph
from memory.semantic.e5_model import bundled_model_path, read_packed_model
from memory.semantic.e5_onnx import OnnxE5, cache_key

TEXTS = ["Acme pays monthly, net 30.", "Olá, amanhã às 9h falamos do orçamento 👋", "会议改到星期五下午三点。"]
BUILT = "graph built"
READ = "graph read from"


@dataclass(frozen=True)
class Reference:
    entry_name: str
    graph: bytes
    passages: np.ndarray
    queries: np.ndarray


def vectors(engine: OnnxE5) -> tuple[np.ndarray, np.ndarray]:
    return engine.embed(TEXTS, is_query=False), engine.embed(TEXTS[:1], is_query=True)


def assert_same_vectors(engine: OnnxE5, reference: Reference) -> None:
    """Bit for bit: the same graph bytes make the same ONNX Runtime session, whether read from the cache
    or from a fresh build, so a tolerance would only hide a wrong entry."""
    passages, queries = vectors(engine)
    assert np.array_equal(passages, reference.passages) and np.array_equal(queries, reference.queries)


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """A load that cannot cache (its folder would be below a file): built in memory, as before the cache."""
    blocker = tmp_path_factory.mktemp("nocache") / "a-file"
    blocker.write_text("not a folder")
    engine = OnnxE5.load(cache_dir=blocker / "cache")
    model = read_packed_model(bundled_model_path())
    source = GraphSource(model)
    key = cache_key(source)
    assert key is not None
    passages, queries = vectors(engine)
    graph = build_encoder_graph(source).SerializeToString()
    return Reference(GraphCache(blocker).entry(key).name, graph, passages, queries)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="memory.semantic")
    return caplog


def test_a_second_load_reads_the_entry_without_building_and_gives_the_same_vectors(
    tmp_path: Path, reference: Reference, debug_logs: pytest.LogCaptureFixture
) -> None:
    first = OnnxE5.load(cache_dir=tmp_path)
    entry = tmp_path / reference.entry_name
    assert [p.name for p in tmp_path.iterdir()] == [entry.name]  # no temporary file left beside it
    assert entry.read_bytes() == reference.graph
    assert sum(BUILT in m for m in messages(debug_logs)) == 1
    before = entry.stat()
    debug_logs.clear()

    second = OnnxE5.load(cache_dir=tmp_path)

    assert not [m for m in messages(debug_logs) if BUILT in m]
    assert [m for m in messages(debug_logs) if READ in m] == [f"embedding model's {READ} {entry}"]
    after = entry.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert_same_vectors(first, reference)
    assert_same_vectors(second, reference)


@pytest.mark.parametrize("damage", ["empty", "cut in half", "last byte missing", "not a model"])
def test_a_corrupt_or_truncated_entry_is_rebuilt_and_replaced(
    tmp_path: Path, reference: Reference, debug_logs: pytest.LogCaptureFixture, damage: str
) -> None:
    entry = tmp_path / reference.entry_name
    entry.write_bytes(
        {
            "empty": b"",
            "cut in half": reference.graph[: len(reference.graph) // 2],
            "last byte missing": reference.graph[:-1],
            "not a model": b"GGUF" + bytes(4096),
        }[damage]
    )

    engine = OnnxE5.load(cache_dir=tmp_path)

    warnings = [r for r in debug_logs.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unusable" in warnings[0].getMessage()
    assert sum(BUILT in m for m in messages(debug_logs)) == 1
    assert entry.read_bytes() == reference.graph  # replaced by a whole one
    assert [p.name for p in tmp_path.iterdir()] == [entry.name]
    assert_same_vectors(engine, reference)


def test_a_folder_that_cannot_be_created_still_loads(
    tmp_path: Path, reference: Reference, debug_logs: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # holds even for root, whom permissions do not stop

    engine = OnnxE5.load(cache_dir=blocker / "cache")

    infos = [r for r in debug_logs.records if r.levelno == logging.INFO and "cannot keep" in r.getMessage()]
    assert len(infos) == 1 and not [r for r in debug_logs.records if r.levelno >= logging.WARNING]
    assert_same_vectors(engine, reference)


def test_an_entry_that_cannot_be_written_still_loads_and_leaves_no_temporary_file(
    tmp_path: Path, reference: Reference, debug_logs: pytest.LogCaptureFixture
) -> None:
    (tmp_path / reference.entry_name).mkdir()  # the rename fails after the whole temporary file was written

    engine = OnnxE5.load(cache_dir=tmp_path)

    assert [m for m in messages(debug_logs) if "cannot keep" in m]
    assert [p.name for p in tmp_path.iterdir()] == [reference.entry_name]  # the temporary file is gone
    assert (tmp_path / reference.entry_name).is_dir()
    assert_same_vectors(engine, reference)


def test_two_loads_at_once_leave_one_whole_entry(tmp_path: Path, reference: Reference) -> None:
    start = threading.Barrier(2)
    engines: list[OnnxE5] = []
    failures: list[BaseException] = []

    def load() -> None:
        start.wait()
        try:
            engines.append(OnnxE5.load(cache_dir=tmp_path))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == [] and len(engines) == 2
    assert [p.name for p in tmp_path.iterdir()] == [reference.entry_name]
    assert (tmp_path / reference.entry_name).read_bytes() == reference.graph
    for engine in engines:
        assert_same_vectors(engine, reference)


def test_the_key_changes_with_a_graph_tensor_and_only_with_what_the_graph_reads(
    tmp_path: Path, reference: Reference
) -> None:
    original = read_packed_model(bundled_model_path())
    key = cache_key(GraphSource(original))

    def altered(tensor: str) -> Path:
        copy = tmp_path / f"{tensor}.bin"
        shutil.copyfile(bundled_model_path(), copy)
        offset = original.tensors[tensor][2] + 7  # a byte of the first block's nibbles
        with copy.open("r+b") as file:
            file.seek(offset)
            byte = file.read(1)[0]
            file.seek(offset)
            file.write(bytes([byte ^ 0x11]))
        return copy

    layer = read_packed_model(altered("l0.q.w"))
    words = read_packed_model(altered("emb.word"))
    assert cache_key(GraphSource(layer)) not in (None, key)
    # The token table is read per text, not built into the graph: the same key is right, because the graph is
    # the same to the byte.
    assert cache_key(GraphSource(words)) == key
    assert build_encoder_graph(GraphSource(words)).SerializeToString() == reference.graph


def test_the_graph_reads_no_tensor_its_digest_leaves_out() -> None:
    source = GraphSource(read_packed_model(bundled_model_path()))
    assert "emb.word" not in source.names and "l11.fo.w" in source.names
    with pytest.raises(KeyError, match="not among the graph's inputs"):
        source.f32("emb.pos")


def test_writing_an_entry_keeps_the_newest_others_and_removes_dead_writers_files(tmp_path: Path) -> None:
    now = time.time()
    for age in range(5):  # older versions' entries, the newest first
        old = tmp_path / f"e5-old{age}.onnx"
        old.write_bytes(b"x")
        os.utime(old, (now - 60 - age, now - 60 - age))
    dead, live = tmp_path / ".e5-dead.tmp", tmp_path / ".e5-live.tmp"
    dead.write_bytes(b"half")
    os.utime(dead, (now - STALE_TEMP_S - 60, now - STALE_TEMP_S - 60))
    live.write_bytes(b"being written")  # another process's write in progress

    stored = GraphCache(tmp_path).store("new", b"graph")

    assert stored == tmp_path / "e5-new.onnx" and stored.read_bytes() == b"graph"
    kept = [f"e5-old{age}.onnx" for age in range(KEEP_ENTRIES - 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".e5-live.tmp", "e5-new.onnx", *kept])


def test_the_default_folder_is_the_users_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    assert user_cache_dir() == tmp_path / "xdg-cache" / "solo-coo"
    assert GraphCache().folder == user_cache_dir()
    assert CACHE_APP_NAME == APP_NAME  # the name bot/ uses for the data and config folders
