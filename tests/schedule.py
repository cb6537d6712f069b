"""The order the test workers take the suite's files in: the longest first.

xdist (``--dist loadfile``) hands each worker one whole file at a time, in collection order. A long file
that comes late (a browser or crash file can take 20-30 s) ran alone at the end while the other workers
had nothing left: in one run the last worker finished 7-9 s after the others. Taking the longest files
first leaves the short ones to fill the end.

The list holds the files that took longest in a timeline of one full run on four workers (each file's
summed test time, 3-27 s). It only orders: a stale or missing entry changes no result, and a file that
no longer exists fails ``tests/test_schedule.py``.
"""

from __future__ import annotations

import pytest

LONGEST_FIRST = (
    "tests/bot/web/test_web_pages_browser.py",
    "tests/bot/web/test_web_browser.py",
    "tests/bot/test_stop.py",
    "tests/memory/semantic/test_semantic.py",
    "tests/bot/test_cli.py",
    "tests/bot/test_crash_recovery.py",
    "tests/bot/web/test_web_trace.py",
    "tests/bot/test_memory_commands.py",
    "tests/bot/test_approval_flow.py",
    "tests/bot/test_invoice_crash.py",
    "tests/bot/test_receivables_crash.py",
    "tests/bot/test_mcp_flow.py",
    "tests/memory/semantic/test_embedder.py",
    "tests/graph/goals/test_goals.py",
    "tests/graph/goals/test_goal_crash.py",
    "tests/security/test_integrity.py",
    "tests/bot/channels/test_console.py",
    "tests/memory/semantic/test_e5_cache.py",
    "tests/bot/test_followups_crash.py",
    "tests/graph/conversation/test_coordinator.py",
    "tests/inbox/test_goal_replies.py",
    "tests/bot/test_receivables_approve_all.py",
    "tests/inbox/test_reconnect.py",
    "tests/memory/semantic/test_recall.py",
    "tests/inbox/test_inbox_flow.py",
    "tests/bot/test_model_fallback_process.py",
    "tests/test_two_files.py",
    "tests/inbox/test_intake_crash.py",
    "tests/graph/goals/test_honest_outcomes.py",
    "tests/bot/test_memory_repair.py",
    "tests/security/test_pairing.py",
    "tests/bot/test_invoice_flow.py",
    "tests/graph/conversation/test_context.py",
    "tests/inbox/test_malformed.py",
    "tests/memory/semantic/test_e5_onnx.py",
    "tests/bot/channels/test_slack.py",
    "tests/bench/test_procs.py",
    "tests/bot/web/test_web_access.py",
    "tests/security/test_storage_faults.py",
    "tests/memory/semantic/test_lance_import.py",
    "tests/bot/test_outage.py",
    "tests/connectors/test_mcp.py",
    "tests/connectors/test_stripe_invoices.py",
    "tests/fakes/test_coo_process.py",
    "tests/bot/web/test_web_pages.py",
    "tests/bot/test_composition.py",
    "tests/security/test_backup_trust.py",
    "tests/bot/test_publish_flow.py",
    "tests/bot/test_receivables.py",
    "tests/graph/conversation/test_episode_summarizer.py",
    "tests/bot/test_dispatcher.py",
    "tests/bot/test_e2e_telegram.py",
    "tests/test_layers.py",
    "tests/inbox/test_after_triage.py",
)
_RANK = {path: rank for rank, path in enumerate(LONGEST_FIRST)}


def longest_first(items: list[pytest.Item]) -> None:
    """Reorder ``items`` in place: the listed files first, longest first; the rest after, as collected.
    A file's tests stay together and in their order (the sort is stable)."""
    items.sort(key=lambda item: _RANK.get(item.nodeid.split("::", 1)[0], len(_RANK)))
