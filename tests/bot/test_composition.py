"""``coo run`` polls before it imports the heavy half: the runtime module alone loads no model client, graph or
semantic memory, and the composition root it imports in a worker thread loads them all, except the libraries
loaded when they are used: LanceDB, PyArrow and NumPy (over 1 s of CPU) when semantic memory is opened, and the
OpenAI SDK (~0.5 s) when a model endpoint's client is made. A `coo run` with semantic memory off, or without a
model, never pays them."""

import subprocess
import sys

HEAVY = ("langgraph", "graph.conversation.coordinator", "graph.goals.runner", "connectors.outbox")
ON_USE = ("lancedb", "pyarrow", "numpy", "openai")

PROBE = """
import importlib, sys
import bot.runtime
print(",".join(m for m in {heavy!r} if m in sys.modules))
importlib.import_module(bot.runtime.COMPOSITION_ROOT)
print(",".join(m for m in {heavy!r} if m in sys.modules))
print(",".join(m for m in {on_use!r} if m in sys.modules))
from graph.models.fallbacks import build_endpoints
from graph.settings import LLMSettings
from graph.spend.pricing import PriceTable
build_endpoints(LLMSettings(base_url="http://127.0.0.1:9/v1", api_key="k", model="m"), PriceTable({{}}))
print("openai" in sys.modules)
"""


def test_the_runtime_alone_imports_nothing_heavy_and_the_composition_root_imports_it_all() -> None:
    probe = PROBE.format(heavy=(*HEAVY, *ON_USE), on_use=ON_USE)
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert out[0] == ""
    assert out[1].split(",") == list(HEAVY)
    assert out[2] == ""  # neither semantic memory's libraries nor the OpenAI SDK yet
    assert out[3] == "True"  # a model endpoint's client loads the SDK
