"""Async waits are native: they wait on the event loop, and take their positions on it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from perdure import DBOS, SetWorkflowID
from tests.integration.system_tables import mark_pending, relaunch, step_rows

# More receivers than the default executor of asyncio has threads on a 2-core machine
# (min(32, cpus + 4) = 6): waits run on threads would leave none for the sends.
RECEIVERS = 12


def test_many_async_receivers_do_not_starve_the_sends_that_wake_them(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    async def receiver() -> Any:
        return await DBOS.recv_async("go", timeout_seconds=20)

    async def main() -> list[Any]:
        handles = []
        for n in range(RECEIVERS):
            with SetWorkflowID(f"async-receiver-{n}"):
                handles.append(await DBOS.start_workflow_async(receiver))
        threads_before = threading.active_count()
        for n in range(RECEIVERS):
            await DBOS.send_async(f"async-receiver-{n}", n, "go")
        results = await asyncio.gather(*(h.get_result() for h in handles))
        # Waiting took no thread of its own: at most the few the sends borrowed.
        assert threading.active_count() - threads_before <= 6
        return list(results)

    assert asyncio.run(main()) == list(range(RECEIVERS))


def test_gathered_async_receives_replay_identically(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow()
    async def two_topics() -> list[Any]:
        first, second = await asyncio.gather(
            DBOS.recv_async("a", timeout_seconds=20), DBOS.recv_async("b", timeout_seconds=20)
        )
        return [first, second]

    async def main() -> list[Any]:
        with SetWorkflowID("gathered"):
            handle = await DBOS.start_workflow_async(two_topics)
        await DBOS.send_async("gathered", "for b", "b")
        await DBOS.send_async("gathered", "for a", "a")
        return await handle.get_result()  # type: ignore[no-any-return]

    assert asyncio.run(main()) == ["for a", "for b"]
    # Each receive took its positions (deadline, then recv) in program order, on the loop.
    names = [row.function_name for row in step_rows(db_url, "gathered")]
    assert names == ["DBOS.sleep", "DBOS.recv", "DBOS.sleep", "DBOS.recv"]

    mark_pending(db_url, "gathered")
    relaunch(db_url)  # the replay gets each topic's own message back, not the other's
    assert asyncio.run(_result("gathered")) == ["for a", "for b"]


async def _result(workflow_id: str) -> Any:
    handle = await DBOS.retrieve_workflow_async(workflow_id)
    return await handle.get_result()


def test_async_get_event_and_stream_read_wait_on_the_loop(dbos: type[DBOS]) -> None:
    gate = threading.Event()

    @DBOS.step()
    def wait_for_gate() -> None:
        gate.wait(20)

    @DBOS.workflow()
    async def publisher() -> None:
        await DBOS.set_event_async("ready", "yes")
        await DBOS.write_stream_async("s", 1)
        await asyncio.to_thread(wait_for_gate)
        await DBOS.write_stream_async("s", 2)
        await DBOS.close_stream_async("s")

    async def main() -> tuple[Any, list[Any]]:
        with SetWorkflowID("publisher"):
            await DBOS.start_workflow_async(publisher)
        ready = await DBOS.get_event_async("publisher", "ready", timeout_seconds=20)
        values = []
        async for value in DBOS.read_stream_async("publisher", "s"):
            values.append(value)
            gate.set()  # the second value comes only after the reader waited on the loop
        return ready, values

    assert asyncio.run(main()) == ("yes", [1, 2])
