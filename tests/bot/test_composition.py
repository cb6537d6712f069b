"""``coo run`` polls before it imports the heavy half: the runtime module alone loads no model client, graph or
semantic memory, and the composition root it imports in a worker thread loads them all, except LanceDB (~1 s
of CPU), which the semantic store loads when it is opened: a `coo run` with semantic memory off never pays it."""

import subprocess
import sys

HEAVY = ("openai", "langgraph", "graph.conversation.coordinator", "graph.goals.runner", "connectors.outbox")
ON_OPEN = "lancedb"

PROBE = """
import importlib, sys
import bot.runtime
print(",".join(m for m in {heavy!r} if m in sys.modules))
importlib.import_module(bot.runtime.COMPOSITION_ROOT)
print(",".join(m for m in {heavy!r} if m in sys.modules))
print({on_open!r} in sys.modules)
"""


def test_the_runtime_alone_imports_nothing_heavy_and_the_composition_root_imports_it_all() -> None:
    probe = PROBE.format(heavy=(*HEAVY, ON_OPEN), on_open=ON_OPEN)
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert out[0] == ""
    assert out[1].split(",") == list(HEAVY)
    assert out[2] == "False"
