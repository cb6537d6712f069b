"""LanceDB works without the REST client's package ``__init__`` having run, and the package is whole as soon
as anything reads from it (each check in a fresh interpreter: the test worker has imported LanceDB already)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from memory.semantic.lance_import import REST_CLIENT

SEEN = f"""
import json, sys
api_loaded = any(m.startswith("{REST_CLIENT}.api.") for m in sys.modules)
print(json.dumps({{"api_loaded": api_loaded, "rows": ROWS, "more": MORE}}))
"""


def fresh(code: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[3]
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_local_database_works_and_the_rest_clients_apis_are_never_imported(tmp_path: Path) -> None:
    code = f"""
from memory.semantic.lance_import import import_lancedb
lancedb = import_lancedb()
db = lancedb.connect({str(tmp_path)!r})
rows = [{{"vector": [1.0, 0.0], "text": "acme"}}, {{"vector": [0.0, 1.0], "text": "globex"}}]
table = db.create_table("t", data=rows)
ROWS = [r["text"] for r in table.search([0.9, 0.1]).limit(1).to_list()]
MORE = None
""" + SEEN
    assert fresh(code) == {"api_loaded": False, "rows": ["acme"], "more": None}


def test_reading_from_the_package_runs_its_init_whole() -> None:
    code = f"""
from memory.semantic.lance_import import import_lancedb
lancedb = import_lancedb()
import {REST_CLIENT} as client
from {REST_CLIENT} import TableApi
ROWS = [client.__version__, TableApi.__name__, client.ApiClient.__name__]
try:
    client.no_such_thing
    MORE = "no error"
except AttributeError as exc:
    MORE = str(exc)
""" + SEEN
    seen = fresh(code)
    assert seen["api_loaded"] is True and seen["rows"][1:] == ["TableApi", "ApiClient"]
    assert seen["more"] == f"module {REST_CLIENT!r} has no attribute 'no_such_thing'"
