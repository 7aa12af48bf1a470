"""The queries of messages, events and streams; a step checkpoint can share their transaction."""

from __future__ import annotations

from typing import Any

from perdure.clock import now_ms
from perdure.storage import statements as core_sql
from perdure.storage.interface import Payload, StepRejected, StepRow, StreamEntry
from perdure.storage.sql_backend import SqlBackend, Statements, step_params

# Stored in place of a missing topic: NULL would need IS NOT DISTINCT FROM in every query.
NO_TOPIC = "__perdure_no_topic__"

SEND = (
    "INSERT INTO {p}notifications (message_id, destination_id, topic, message, serialization, "
    "created_at_epoch_ms) SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM {p}workflow_status "
    "WHERE workflow_id = ?) ON CONFLICT (message_id) DO NOTHING"
)
MESSAGE_EXISTS = "SELECT 1 FROM {p}notifications WHERE message_id = ?"
# The oldest unread message of a topic, marked read as it is taken ({lock} locks the row on
# Postgres). Read messages stay, so their IDs keep deduplicating retried sends.
CONSUME = (
    "UPDATE {p}notifications SET consumed = 1 WHERE seq = (SELECT seq FROM {p}notifications "
    "WHERE destination_id = ? AND topic = ? AND consumed = 0 ORDER BY seq LIMIT 1{lock}) "
    "RETURNING message, serialization"
)
PEEK = (
    "SELECT 1 FROM {p}notifications WHERE destination_id = ? AND topic = ? AND consumed = 0 LIMIT 1"
)
UPSERT_EVENT = (
    "INSERT INTO {p}workflow_events (workflow_id, key, value, serialization, "
    "updated_at_epoch_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (workflow_id, key) DO UPDATE SET "
    "value = excluded.value, serialization = excluded.serialization, "
    "updated_at_epoch_ms = excluded.updated_at_epoch_ms"
)
GET_EVENT = "SELECT value, serialization FROM {p}workflow_events WHERE workflow_id = ? AND key = ?"
ALL_EVENTS = (
    "SELECT key, value, serialization FROM {p}workflow_events WHERE workflow_id = ? ORDER BY key"
)
WRITE_STREAM = (
    'INSERT INTO {p}streams (workflow_id, key, "offset", value, serialization, closed) '
    'SELECT ?, ?, COALESCE(MAX("offset") + 1, 0), ?, ?, ? FROM {p}streams '
    "WHERE workflow_id = ? AND key = ?"
)
READ_STREAM = (
    'SELECT "offset", value, serialization, closed FROM {p}streams '
    'WHERE workflow_id = ? AND key = ? AND "offset" >= ? ORDER BY "offset"'
)


class MessagingQueries(SqlBackend):
    """Messages (FIFO per topic), events (latest value per key) and streams (append-only)."""

    def _with_step(self, tx: Statements, step: StepRow | None) -> None:
        if step is None:
            return
        params = (*step_params(step), step.workflow_id)
        if tx.run(self._q(core_sql.INSERT_STEP_IF_PENDING), params)[1] != 1:
            raise StepRejected("unrecorded")

    def _in_step_transaction(self, step: StepRow | None, work: Any) -> Any:
        """Run ``work(tx)`` and record ``step`` in the same transaction."""

        def run(tx: Statements) -> Any:
            result = work(tx)
            self._with_step(tx, step)
            return result

        try:
            return self._transaction(run)
        except StepRejected:
            assert step is not None  # noqa: S101 - only raised when there is a step
            raise StepRejected(self.unrecorded_reason(step.workflow_id)) from None

    def send_message(
        self,
        *,
        message_id: str,
        destination_id: str,
        topic: str | None,
        message: bytes,
        serialization: str,
        step: StepRow | None = None,
    ) -> str:
        """Queue a message; returns "sent", "duplicate" (same ID sent before) or "no_destination".

        Raises `StepRejected` if ``step`` could not be recorded (nothing is sent then).
        """
        params = (
            message_id,
            destination_id,
            topic or NO_TOPIC,
            message,
            serialization,
            now_ms(),
            destination_id,
        )

        if step is None:
            # No checkpoint to share a transaction with: one autocommit statement; the reason
            # for not sending is looked up only when nothing was inserted.
            if self._autocommit(self._q(SEND), params)[1] == 1:
                return "sent"
            if self._autocommit(self._q(MESSAGE_EXISTS), (message_id,))[0]:
                return "duplicate"
            return "no_destination"

        def send(tx: Statements) -> str:
            if tx.run(self._q(SEND), params)[1] == 1:
                return "sent"
            if tx.run(self._q(MESSAGE_EXISTS), (message_id,))[0]:
                return "duplicate"
            return "no_destination"

        outcome: str = self._in_step_transaction(step, send)
        return outcome

    def receive_message(
        self, destination_id: str, topic: str | None, step: StepRow | None
    ) -> Payload | None:
        """Take the oldest unread message of the topic, recording ``step`` with it.

        The step's output becomes the message, in the same transaction: a message is consumed
        exactly once. Returns None (and records nothing) when no message is waiting.
        """
        lock = " FOR UPDATE" if self.placeholder == "%s" else ""
        statement = self._q(CONSUME.replace("{lock}", lock))

        def consume(tx: Statements) -> Payload | None:
            rows, _ = tx.run(statement, (destination_id, topic or NO_TOPIC))
            if not rows:
                return None
            data, serialization = rows[0]
            payload = Payload(bytes(data) if data is not None else None, serialization)
            if step is not None:
                step.output, step.serialization = payload.data, serialization
                self._with_step(tx, step)
            return payload

        try:
            result: Payload | None = self._transaction(consume)
        except StepRejected:
            assert step is not None  # noqa: S101 - only raised when there is a step
            raise StepRejected(self.unrecorded_reason(step.workflow_id)) from None
        return result

    def has_message(self, destination_id: str, topic: str | None) -> bool:
        """Whether a message is waiting (a cheap check before a consuming transaction)."""
        return bool(self._autocommit(self._q(PEEK), (destination_id, topic or NO_TOPIC))[0])

    def set_event(
        self,
        workflow_id: str,
        key: str,
        value: bytes,
        serialization: str,
        step: StepRow | None = None,
    ) -> None:
        """Publish (or replace) an event, recording ``step`` in the same transaction."""
        params = (workflow_id, key, value, serialization, now_ms())
        if step is None:
            self._autocommit(self._q(UPSERT_EVENT), params)
            return
        self._in_step_transaction(step, lambda tx: tx.run(self._q(UPSERT_EVENT), params))

    def get_event(self, workflow_id: str, key: str) -> Payload | None:
        """The current value of an event, or None if not set."""
        rows, _ = self._autocommit(self._q(GET_EVENT), (workflow_id, key))
        if not rows:
            return None
        data, serialization = rows[0]
        return Payload(bytes(data) if data is not None else None, serialization)

    def get_all_events(self, workflow_id: str) -> dict[str, Payload]:
        """Every event of a workflow, by key."""
        rows, _ = self._autocommit(self._q(ALL_EVENTS), (workflow_id,))
        return {k: Payload(bytes(v) if v is not None else None, s) for k, v, s in rows}

    def write_stream(
        self,
        workflow_id: str,
        key: str,
        value: bytes | None,
        serialization: str,
        *,
        closed: bool,
        step: StepRow | None = None,
    ) -> None:
        """Append a value (or the end marker) to a stream, recording ``step`` with it."""
        params = (workflow_id, key, value, serialization, int(closed), workflow_id, key)
        if step is None:
            self._transaction(lambda tx: tx.run(self._q(WRITE_STREAM), params))
            return
        self._in_step_transaction(step, lambda tx: tx.run(self._q(WRITE_STREAM), params))

    def read_stream(self, workflow_id: str, key: str, from_offset: int) -> list[StreamEntry]:
        """The stream's entries from ``from_offset`` on, in order."""
        rows, _ = self._autocommit(self._q(READ_STREAM), (workflow_id, key, from_offset))
        return [
            StreamEntry(o, Payload(bytes(v) if v is not None else None, s), bool(c))
            for o, v, s, c in rows
        ]
