"""A process cut off from the database (a partition that heals) is taken over and fenced off.

The owner reaches PostgreSQL through a proxy; the test partitions it (bytes buffered, nothing
delivered, no connection closed: a network that drops packets) while its workflows are inside
their gate step. The taker sees the owner's heartbeat stop and takes the workflows over. When
the partition heals, the owner's buffered statements arrive; its checkpoint of the gate step
is refused, and it runs no later step.
"""

from __future__ import annotations

import time

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.crash.harness import Programs, Witness, wait_until
from tests.faults.owners import (
    POSITIONS,
    WORKFLOWS,
    assert_ran_once_but_the_step_in_flight,
    start_owner_and_taker,
    taken_over,
)
from tests.faults.proxy import FaultProxy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.single_backend(
        "postgres",
        reason="a partition needs a network between Perdure and its database; "
        "SQLite is a file on the same host",
    ),
]


def proxy_for(url: str) -> FaultProxy:
    """A proxy in front of the server of ``url`` (started by ``with``)."""
    info = conninfo_to_dict(url)
    return FaultProxy(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))


@pytest.mark.parametrize("run", [1, 2])
def test_a_partitioned_owner_is_taken_over_and_records_nothing_after_healing(
    postgres_url: str, programs: Programs, tmp_path: object, run: int
) -> None:
    witness = Witness.create(postgres_url, tmp_path)  # type: ignore[arg-type]
    with proxy_for(postgres_url) as proxy:
        owner, taker = start_owner_and_taker(programs, witness, url=proxy.url_for(postgres_url))
        proxy.blackhole()
        cut = time.monotonic()
        try:
            wait_until(lambda: taken_over(witness), what="the takeover", timeout=30, watch=[taker])
            took = time.monotonic() - cut
            witness.milestones.raise_flag("release")
            wait_until(
                lambda: {w.status for w in witness.workflows().values()} == {"SUCCESS"},
                what="the taker to finish every workflow",
                watch=[taker],
            )
        finally:
            proxy.heal()
        wait_until(witness.outcomes, what="the owner's outcome", watch=[owner], timeout=60)
        witness.milestones.record("stop")
        owner.expect_exit(0)
        taker.expect_exit(0)
    print(f"run {run}: partitioned owner taken over {took:.1f}s after the cut (timeout 3s)")
    assert witness.outcomes() == [
        {"by": "owner", "output": [sum(POSITIONS)] * WORKFLOWS, "error": None}
    ]
    assert_ran_once_but_the_step_in_flight(witness, owner.process.pid)
