"""``coo pair`` and ``coo operators``: who may use the bot, managed from the machine it runs on (I6)."""

from __future__ import annotations

from datetime import timedelta

from bot.settings import Settings
from memory.db import open_database
from memory.operators import OperatorStore


async def open_pairing(settings: Settings) -> int:
    """Open pairing for one new operator: print a one-time code; the running bot tells the operators."""
    async with open_database(settings.data_dir, settings.sqlite.busy_timeout_ms) as db:
        store = OperatorStore(db)
        await store.setup()
        ttl = timedelta(seconds=settings.pairing_code_ttl_s)
        code = await store.open_pairing("cli", ttl)
    minutes = int(ttl.total_seconds() // 60)
    print(f"pairing code: {code} (one use, expires in {minutes} min)")
    print("Send /pair CODE to the bot from the account that should become an operator.")
    print("Every operator is told that pairing was opened, and who paired.")
    return 0


async def manage_operators(settings: Settings, remove: str | None) -> int:
    """List operators, or remove a paired one (its access ends at once, also in a running bot)."""
    async with open_database(settings.data_dir, settings.sqlite.busy_timeout_ms) as db:
        store = OperatorStore(db)
        await store.setup()
        if remove is None:
            lines = [f"{identity}  (COO_OPERATORS)" for identity in sorted(settings.operator_ids)]
            lines += [f"{op.identity}  (paired {op.added_at:%Y-%m-%d %H:%M} UTC)" for op in await store.paired()]
            print("\n".join(lines) if lines else "no operators yet: set COO_OPERATORS or run `coo pair`")
            return 0
        if remove in settings.operator_ids:
            print(f"coo: {remove} comes from COO_OPERATORS: remove it there and restart")
            return 1
        if not await store.remove(remove, "cli"):
            print(f"coo: {remove} is not a paired operator")
            return 1
    print(f"removed {remove}; its access ended")
    return 0
