"""The queries of messages, events and streams; a step checkpoint can share their transaction."""

from __future__ import annotations

from typing import Any

from perdure.clock import now_ms
from perdure.storage import statements as core_sql
from perdure.storage.interface import (
    STEP_COLUMNS,
    Payload,
    StepRejected,
    StepRow,
    StreamEntry,
    Unrecorded,
)
from perdure.storage.sql_backend import UNIQUE_VIOLATION, SqlBackend, Statements, step_params

# Stored in place of a missing topic: NULL would need IS NOT DISTINCT FROM in every query.
NO_TOPIC = "__perdure_no_topic__"

SEND = (
    "INSERT INTO {p}notifications (message_id, destination_id, topic, message, serialization, "
    "created_at_epoch_ms) SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM {p}workflow_status "
    "WHERE workflow_id = ?) ON CONFLICT (message_id) DO NOTHING"
)
MESSAGE_EXISTS = "SELECT 1 FROM {p}notifications WHERE message_id = ?"
# SQLite: the oldest unread message of a topic, marked read as it is taken. Read messages
# stay, so their IDs keep deduplicating retried sends.
CONSUME = (
    "UPDATE {p}notifications SET consumed = 1 WHERE seq = (SELECT seq FROM {p}notifications "
    "WHERE destination_id = ? AND topic = ? AND consumed = 0 ORDER BY seq LIMIT 1) "
    "RETURNING message, serialization"
)
# PostgreSQL records a step and its effect in one statement (one round trip) instead of a
# transaction of four. The effect happens only while the workflow is PENDING (``live``), and a
# step already recorded at the position (another execution got there first) fails the whole
# statement on the primary key: an effect is never kept without the step that records it.
_STEP_COLS = ", ".join(STEP_COLUMNS)
_LIVE = "live AS (SELECT 1 FROM {p}workflow_status WHERE workflow_id = ? AND status = 'PENDING')"
# Then an effect statement that reads ``FROM recorded`` (one row when the step was recorded).
_RECORDED = (
    f"WITH {_LIVE}, recorded AS (INSERT INTO {{p}}operation_outputs ({_STEP_COLS}) "
    f"SELECT {', '.join('?' for _ in STEP_COLUMNS)} FROM live RETURNING 1) "
)
# The message is taken with its step. Returns one row: the message (NULLs if none is
# waiting) and whether the workflow was PENDING.
CONSUME_AND_RECORD = (
    f"WITH {_LIVE}, "
    "taken AS (UPDATE {p}notifications SET consumed = 1 WHERE seq = (SELECT seq "
    "FROM {p}notifications WHERE destination_id = ? AND topic = ? AND consumed = 0 "
    "ORDER BY seq LIMIT 1 FOR UPDATE) AND EXISTS (SELECT 1 FROM live) "
    "RETURNING message, serialization), "
    f"recorded AS (INSERT INTO {{p}}operation_outputs ({_STEP_COLS}) "
    "SELECT ?, ?, ?, message, NULL, NULL, serialization, ?, ? FROM taken) "
    "SELECT taken.message, taken.serialization, EXISTS (SELECT 1 FROM live) "
    "FROM (SELECT 1) AS one LEFT JOIN taken ON true"
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
SET_EVENT_RECORDED = _RECORDED + (
    "INSERT INTO {p}workflow_events (workflow_id, key, value, serialization, "
    "updated_at_epoch_ms) SELECT ?, ?, ?, ?, ? FROM recorded ON CONFLICT (workflow_id, key) "
    "DO UPDATE SET value = excluded.value, serialization = excluded.serialization, "
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
# HAVING, not WHERE: the aggregate yields a row even when nothing matches.
WRITE_STREAM_RECORDED = _RECORDED + WRITE_STREAM + " HAVING EXISTS (SELECT 1 FROM recorded)"
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
        self, destination_id: str, topic: str | None, step: StepRow
    ) -> Payload | None:
        """Take the oldest unread message of the topic, recording ``step`` with it.

        The step's output becomes the message, in the same transaction: a message is consumed
        exactly once. Returns None (and records nothing) when no message is waiting.
        """
        if self.backend_name == "postgres":
            return self._consume_and_record(destination_id, topic, step)
        # SQLite: a write transaction locks the whole file, so look before taking the lock.
        if not self.has_message(destination_id, topic):
            return None

        def consume(tx: Statements) -> Payload | None:
            rows, _ = tx.run(self._q(CONSUME), (destination_id, topic or NO_TOPIC))
            if not rows:
                return None
            data, serialization = rows[0]
            step.output, step.serialization = bytes(data), serialization
            self._with_step(tx, step)
            return Payload(step.output, serialization)

        try:
            result: Payload | None = self._transaction(consume)
        except StepRejected:
            raise StepRejected(self.unrecorded_reason(step.workflow_id)) from None
        return result

    def _consume_and_record(
        self, destination_id: str, topic: str | None, step: StepRow
    ) -> Payload | None:
        params = (
            step.workflow_id, destination_id, topic or NO_TOPIC, step.workflow_id,
            step.function_id, step.function_name, step.started_at_epoch_ms,
            step.completed_at_epoch_ms,
        )  # fmt: skip
        rows, _ = self._one_statement_step(CONSUME_AND_RECORD, params)
        data, serialization, live = rows[0]
        if not live:
            raise StepRejected(self.unrecorded_reason(step.workflow_id))
        if serialization is None:
            return None
        step.output, step.serialization = bytes(data), serialization
        return Payload(step.output, serialization)

    def _run_recorded(self, step: StepRow, effect: str, params: tuple[Any, ...]) -> None:
        """PostgreSQL: record ``step`` and run ``effect`` (a `_RECORDED` statement) at once."""
        statement_params = (step.workflow_id, *step_params(step), *params)
        if self._one_statement_step(effect, statement_params)[1] != 1:
            raise StepRejected(self.unrecorded_reason(step.workflow_id))

    def _one_statement_step(self, statement: str, params: tuple[Any, ...]) -> tuple[Any, int]:
        """Run a statement that records a step; a taken position raises `StepRejected`."""
        try:
            return self._autocommit(self._q(statement), params)
        except Exception as exc:
            if getattr(exc, "sqlstate", None) == UNIQUE_VIOLATION:
                raise StepRejected(Unrecorded.CONFLICT) from None  # the statement changed nothing
            raise

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
        elif self.backend_name == "postgres":
            self._run_recorded(step, SET_EVENT_RECORDED, params)
        else:
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
        elif self.backend_name == "postgres":
            self._run_recorded(step, WRITE_STREAM_RECORDED, params)
        else:
            self._in_step_transaction(step, lambda tx: tx.run(self._q(WRITE_STREAM), params))

    def read_stream(self, workflow_id: str, key: str, from_offset: int) -> list[StreamEntry]:
        """The stream's entries from ``from_offset`` on, in order."""
        rows, _ = self._autocommit(self._q(READ_STREAM), (workflow_id, key, from_offset))
        return [
            StreamEntry(o, Payload(bytes(v) if v is not None else None, s), bool(c))
            for o, v, s, c in rows
        ]
