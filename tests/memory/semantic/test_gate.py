"""The gate: searches together, an operation that deletes files alone; waits are on events, not time."""

from __future__ import annotations

import asyncio

from memory.semantic.gate import Gate


async def settle() -> None:
    """Let every ready task run until each waits on something (no timed wait)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_searches_share_and_the_exclusive_one_waits_until_the_last_leaves() -> None:
    gate = Gate()
    leave = asyncio.Event()
    inside: list[str] = []

    async def search(name: str) -> None:
        async with gate.shared():
            inside.append(name)
            await leave.wait()
            inside.remove(name)

    async def prune() -> None:
        async with gate.exclusive():
            inside.append("prune")

    searches = [asyncio.create_task(search(n)) for n in ("s1", "s2")]
    await settle()
    pruning = asyncio.create_task(prune())
    await settle()
    assert inside == ["s1", "s2"] and not pruning.done()  # both searches in at once; the prune waits
    leave.set()
    await asyncio.gather(*searches, pruning)
    assert inside == ["prune"]


async def test_a_search_waits_while_the_exclusive_one_is_inside_and_a_failure_releases_the_gate() -> None:
    gate = Gate()
    release = asyncio.Event()
    order: list[str] = []

    async def prune() -> None:
        async with gate.exclusive():
            order.append("prune in")
            await release.wait()
            raise OSError("disk full")

    async def search() -> None:
        async with gate.shared():
            order.append("search")

    pruning = asyncio.create_task(prune())
    await settle()
    searching = asyncio.create_task(search())
    await settle()
    assert order == ["prune in"] and not searching.done()
    release.set()
    await asyncio.gather(pruning, return_exceptions=True)
    await searching  # the failed prune left the gate open
    assert order == ["prune in", "search"] and isinstance(pruning.exception(), OSError)
