"""LanceDB, imported without running the ``__init__`` of a REST client that a local database never uses.

``lancedb`` imports ``lance_namespace``, which imports models from the generated REST client
``lance_namespace_urllib3_client``. That package's ``__init__`` imports every API class of the client, and
pydantic wraps their ~370 methods as they are defined: about half of LanceDB's import (0.5 of 1.1 s of CPU,
ad hoc on this machine), paid by every start with semantic memory on. Here the package's submodules (the
models ``lance_namespace`` needs) are imported as usual; only the package's own ``__init__`` waits until
something reads an attribute of the package, which runs it whole first. So a remote namespace, which uses
the client, behaves as before.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

REST_CLIENT = "lance_namespace_urllib3_client"


def import_lancedb() -> ModuleType:
    """``import lancedb``, with the REST client's package ``__init__`` deferred (see the module's docstring)."""
    defer_package_init(REST_CLIENT)
    import lancedb

    return lancedb


def defer_package_init(name: str) -> None:
    """Make the package ``name`` importable with its ``__init__`` not run until an attribute of it is read.

    Nothing happens if it is imported already, not installed, or not a package.
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader
    lock = threading.Lock()

    def run_init_then_get(attribute: str) -> Any:
        with lock:
            if module.__dict__.get("__getattr__") is run_init_then_get:
                del module.__dict__["__getattr__"]
                loader.exec_module(module)
        try:
            return module.__dict__[attribute]
        except KeyError:
            raise AttributeError(f"module {name!r} has no attribute {attribute!r}") from None

    module.__dict__["__getattr__"] = run_init_then_get
    sys.modules[name] = module
