"""The clients: the planned requests arrive at their (simulated) times, each served in a task of
its own, as concurrent users would send them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from blameset import instrument

from ._loop import now
from ._service import handle, publish_worker
from ._traffic import Request

__all__ = ["serve"]


async def serve(plan: list[Request], progress: Callable[[str, int, int], None] | None) -> None:
    """The clients: each request arrives at its planned (simulated) time and is served in a task
    of its own, the publish worker alongside; returns when every request has its answer."""
    worker = asyncio.create_task(publish_worker())
    tasks: set[asyncio.Task[None]] = set()
    served = 0

    async def one(req: Request) -> None:
        nonlocal served
        await handle(req)
        served += 1
        if progress is not None:
            progress("serving", served, len(plan))
        if served % 1000 == 0:
            instrument.force_flush()  # keep the export queue short: nothing spills

    for req in plan:
        wait = req.at - now()
        if wait > 0:
            await asyncio.sleep(wait)
        task = asyncio.create_task(one(req))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*tasks)
    worker.cancel()
