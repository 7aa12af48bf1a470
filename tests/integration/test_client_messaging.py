"""`DBOSClient` sends, events and stream reads against workflows of a launched app."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from perdure import DBOS, DBOSClient, SendMessage, SetWorkflowID
from perdure.error import DBOSNonExistentWorkflowError, DBOSStreamTimeoutError
from tests.fixtures.app import wait_until
from tests.integration.system_tables import run_sql


@pytest.fixture
def client(dbos: type[DBOS], db_url: str) -> Iterator[DBOSClient]:
    opened = DBOSClient(db_url)
    yield opened
    opened.destroy()


def test_client_sends_and_reads_events_and_streams(client: DBOSClient) -> None:
    @DBOS.workflow()
    def echo() -> str:
        message = DBOS.recv("in", timeout_seconds=20)
        DBOS.set_event("reply", f"got {message}")
        for part in str(message).split():
            DBOS.write_stream("words", part)
        DBOS.close_stream("words")
        return str(message)

    with SetWorkflowID("echo"):
        handle = DBOS.start_workflow(echo)
    client.send("echo", "hello durable world", "in", idempotency_key="once")
    client.send("echo", "hello durable world", "in", idempotency_key="once")  # deduplicated
    assert client.get_event("echo", "reply", timeout_seconds=20) == "got hello durable world"
    assert list(client.read_stream("echo", "words")) == ["hello", "durable", "world"]
    assert handle.get_result() == "hello durable world"
    assert client.get_event("echo", "missing", timeout_seconds=0.1) is None


def test_client_async_twins(client: DBOSClient) -> None:
    @DBOS.workflow()
    def relay() -> None:
        DBOS.write_stream("out", DBOS.recv(timeout_seconds=20))
        DBOS.close_stream("out")

    with SetWorkflowID("relay"):
        DBOS.start_workflow(relay)

    async def main() -> list[object]:
        await client.send_async("relay", 41)
        return [value async for value in client.read_stream_async("relay", "out")]

    assert asyncio.run(main()) == [41]


@pytest.mark.parametrize("size", [10, 20_000], ids=["small", "too-long-to-notify"])
def test_a_client_hands_a_message_to_a_receiver_blocked_in_the_app(
    client: DBOSClient, db_url: str, size: int
) -> None:
    @DBOS.workflow()
    def receiver() -> object:
        return DBOS.recv("t", timeout_seconds=30)

    with SetWorkflowID("blocked"):
        handle = DBOS.start_workflow(receiver)
    waiting = "SELECT COUNT(*) FROM {p}recv_waiters WHERE workflow_id = 'blocked'"
    wait_until(lambda: run_sql(db_url, waiting)[0][0], what="recv to block")
    # The app learns of it from the database: the notification carries a short message,
    # a long one is read back from the recv step the client's statement recorded.
    client.send("blocked", "m" * size, "t")
    assert handle.get_result() == "m" * size


def test_client_sends_in_bulk_and_reads_streams_from_an_offset(client: DBOSClient) -> None:
    @DBOS.workflow()
    def doubler() -> None:
        for _ in range(2):
            DBOS.write_stream("out", 2 * int(DBOS.recv("in", timeout_seconds=20)))
        DBOS.recv("stop", timeout_seconds=20)  # keeps the stream open until told

    with SetWorkflowID("doubler"):
        handle = DBOS.start_workflow(doubler)
    client.send_bulk([SendMessage("doubler", 1, "in"), SendMessage("doubler", 2, "in")])
    assert client.read_stream_offset("doubler", "out", 1, timeout_seconds=20) == 4
    values = client.read_stream("doubler", "out", offset=1, timeout_seconds=0.2)
    assert next(values) == 4
    with pytest.raises(DBOSStreamTimeoutError):
        next(values)  # open, and nothing more written
    with pytest.raises(DBOSNonExistentWorkflowError):
        client.send_bulk([SendMessage("doubler", 3, "in"), SendMessage("nobody", 3)])
    client.send("doubler", "now", "stop", send_to_forks=True)
    handle.get_result()
    assert list(client.read_stream("doubler", "out")) == [2, 4]

    async def main() -> list[object]:
        await client.send_bulk_async([])
        return [
            await client.read_stream_offset_async("doubler", "out", 0),
            [v async for v in client.read_stream_async("doubler", "out", offset=1)],
        ]

    assert asyncio.run(main()) == [2, [4]]
