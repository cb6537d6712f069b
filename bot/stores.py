"""The durable state ``coo run`` opens first: one SQLite database and the stores on it."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass

from bot.settings import Settings
from memory.approvals import ApprovalStore
from memory.control import ControlStore
from memory.db import Database, connect_sqlite, open_database
from memory.ledger import CostLedger
from memory.notes import NoteLedger
from memory.operators import OperatorStore
from memory.profile import ProfileStore
from memory.records import Records
from memory.tasks import TaskLedger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stores:
    """The durable state, opened first."""

    db: Database
    approvals: ApprovalStore
    control: ControlStore
    ledger: CostLedger
    operators: OperatorStore
    profile: ProfileStore
    records: Records
    notes: NoteLedger
    tasks: TaskLedger


async def open_stores(settings: Settings, stack: AsyncExitStack) -> Stores:
    data_dir = settings.data_dir
    timeout = settings.sqlite.busy_timeout_ms
    db = await stack.enter_async_context(open_database(data_dir, timeout))
    # The approval store owns its own connection: its transactions must not share one.
    store_conn = await connect_sqlite(data_dir / "coo.sqlite", timeout)
    stack.push_async_callback(store_conn.close)
    approvals = ApprovalStore(store_conn)
    await approvals.setup(db.install)
    stores = Stores(
        db,
        approvals,
        ControlStore(db),
        CostLedger(db),
        OperatorStore(db),
        ProfileStore(db),
        Records(db),
        NoteLedger(db),
        TaskLedger(db),
    )
    for part in (stores.control, stores.operators, stores.profile, stores.records, stores.notes, stores.tasks):
        await part.setup()
    recovered = await stores.ledger.setup()
    if recovered:
        log.warning("%d model call(s) were in flight when the last run stopped; counted at their estimate", recovered)
    return stores
