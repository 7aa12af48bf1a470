"""How much a statement costs back to back and after 20 ms of idleness (PostgreSQL).

Usage: ``python -m benchmarks.probes.idle_cost [URL]`` (default: the server of
``BENCH_PG_URL``, database ``perdure_probe``, recreated). Launches Perdure, then times 200
``send`` and 200 ``get_event`` calls through its store, first back to back, then each after a
20 ms pause: the wait that scenario (d) makes before every wake-up.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable

from benchmarks.probes.common import fresh_database
from perdure import DBOS, SetWorkflowID

CALLS = 200
PAUSE_SEC = 0.02


def p50_ms(call: Callable[[], object], pause_sec: float) -> float:
    samples = []
    for _ in range(CALLS):
        if pause_sec:
            time.sleep(pause_sec)  # the idleness under study, not synchronisation
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> None:
    url = fresh_database(sys.argv[1] if len(sys.argv) > 1 else None)
    DBOS(config={"name": "probe", "system_database_url": url})

    @DBOS.workflow()
    def target() -> int:
        return 1

    DBOS.launch()
    with SetWorkflowID("target"):
        target()
    store = DBOS._runtime._store  # a probe of the store itself

    def send() -> object:
        return store.send_message(
            message_id=uuid.uuid4().hex, destination_id="target", topic="t", message=b"1",
            serialization="json", recv_step_name="DBOS.recv",
        )  # fmt: skip

    def get_event() -> object:
        return store.get_event("target", "k")

    for name, call in (("send", send), ("get_event", get_event)):
        tight, idle = p50_ms(call, 0), p50_ms(call, PAUSE_SEC)
        sys.stdout.write(
            f"{name}: p50 {tight:.3f} ms back to back, {idle:.3f} ms after "
            f"{PAUSE_SEC * 1000:.0f} ms idle\n"
        )
    DBOS.destroy()


if __name__ == "__main__":
    main()
