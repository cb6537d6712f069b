from pathlib import Path

import pytest

from bench.profile_report import pyspy_breakdown


def test_pyspy_breakdown_attributes_samples_per_message(tmp_path: Path) -> None:
    raw = tmp_path / "pyspy.txt"
    raw.write_text(
        "thread (11): MainThread;respond (graph/conversation/coordinator.py:10);append_event (memory/db.py:5);"
        "dumps (json/__init__.py:2) 30\n"
        "thread (12): embedder_0;_run (memory/semantic/embedder.py:9);run (onnxruntime/capi/session.py:1) 70\n"
    )
    cpu = pyspy_breakdown(raw, rate=100, messages=10)  # 100 samples at 100 Hz = 1 s over 10 messages
    assert cpu["total_ms"] == pytest.approx(100.0)
    assert cpu["categories"] == {
        "embedder (ONNX Runtime, native)": pytest.approx(70.0),
        "solo-coo memory/": pytest.approx(30.0),
    }
    assert cpu["functions"]["append_event"] == pytest.approx(30.0)
    assert cpu["functions"]["respond"] == pytest.approx(30.0)
    assert cpu["main_categories"] == {"solo-coo memory/": pytest.approx(30.0)}  # json counts for its caller
    assert cpu["threads"] == {"MainThread": pytest.approx(30.0), "embedder": pytest.approx(70.0)}


def test_every_traced_target_exists() -> None:
    # A renamed function would silently drop out of the profile: every target must resolve.
    import importlib

    from bench.traced import TARGETS

    for module_name, attr, label in TARGETS:
        owner: object = importlib.import_module(module_name)
        for part in attr.split("."):
            assert hasattr(owner, part), f"{module_name}.{attr} ({label}) no longer exists"
            owner = getattr(owner, part)
