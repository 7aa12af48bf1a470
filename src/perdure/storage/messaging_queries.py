"""The queries of messages, events and streams; a step checkpoint can share their transaction."""

from __future__ import annotations

from functools import partial
from typing import Any, cast

from perdure.clock import now_ms
from perdure.storage import statements as core_sql
from perdure.storage.interface import (
    STEP_COLUMNS,
    Delivery,
    Payload,
    StepRejected,
    StepRow,
    StreamEntry,
    Unrecorded,
)
from perdure.storage.sql_backend import (
    UNIQUE_VIOLATION,
    SqlBackend,
    Statements,
    step_params,
    step_row,
)

# Stored in place of a missing topic: NULL would need IS NOT DISTINCT FROM in every query.
NO_TOPIC = "__perdure_no_topic__"

_STEP_COLS = ", ".join(STEP_COLUMNS)
_MESSAGE_COLS = "message_id, destination_id, topic, message, serialization, created_at_epoch_ms"
MESSAGE_EXISTS = "SELECT 1 FROM {p}notifications WHERE message_id = ?"
QUEUE_MESSAGE = (
    f"INSERT INTO {{p}}notifications ({_MESSAGE_COLS}, consumed) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# A registered receiver, taken by the sender that hands it a message (or by its own timeout).
TAKE_WAITER = (
    "DELETE FROM {p}recv_waiters WHERE workflow_id = ? AND topic = ? RETURNING function_id"
)
STOP_WAITING = "DELETE FROM {p}recv_waiters WHERE workflow_id = ? AND topic = ? AND function_id = ?"
WAITING_AT = "SELECT function_id FROM {p}recv_waiters WHERE workflow_id = ? AND topic = ?"
REGISTER_WAITER = (
    "INSERT INTO {p}recv_waiters (workflow_id, topic, function_id) VALUES (?, ?, ?) "
    "ON CONFLICT (workflow_id, topic) DO UPDATE SET function_id = excluded.function_id"
)
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
_LIVE = "live AS (SELECT 1 FROM {p}workflow_status WHERE workflow_id = ? AND status = 'PENDING')"
_RECORDED_CTE = (
    f"{_LIVE}, recorded AS (INSERT INTO {{p}}operation_outputs ({_STEP_COLS}) "
    f"SELECT {', '.join('?' for _ in STEP_COLUMNS)} FROM live RETURNING 1)"
)
# Then an effect statement that reads ``FROM recorded`` (one row when the step was recorded).
_RECORDED = f"WITH {_RECORDED_CTE} "

# PostgreSQL delivers a message in one statement. When its receiver is registered as blocked
# in recv, nothing older is queued and the ID is new, the message is recorded as the
# receiver's step (and stored consumed, so its ID still deduplicates), and the statement sends
# the wake-up "recv|<workflow>|<position>|<format>|<base64 message>" (format and message left
# empty when too long for a notification). Otherwise it is queued, which the trigger announces.
# A position already recorded (a stale registration) leaves the message queued. The hand-off
# insert has no ON CONFLICT: a duplicate sent concurrently fails the statement (undoing the
# hand-off), and a retry finds the duplicate. Nothing happens unless ``go`` has a row (from a
# workflow: unless the sender's own step was recorded). Returns: destination exists, rows
# written, position handed to, (the notification), whether it went ahead.
_NOTE_MAX_MESSAGE = 3072  # bytes; as base64 with the IDs, well inside the 8000-byte limit
_NOTE_MAX_ID = 2048
_DELIVER = (
    "m AS (SELECT ?::text AS message_id, ?::text AS destination_id, ?::text AS topic, "
    "?::bytea AS message, ?::text AS serialization, ?::bigint AS created_at_epoch_ms, "
    "?::text AS recv_step_name), "
    "dest AS (SELECT w.status FROM {p}workflow_status w JOIN m "
    "ON w.workflow_id = m.destination_id), "
    "waiter AS (DELETE FROM {p}recv_waiters r USING m WHERE r.workflow_id = m.destination_id "
    "AND r.topic = m.topic AND EXISTS (SELECT 1 FROM go) "
    "AND EXISTS (SELECT 1 FROM dest WHERE status = 'PENDING') "
    "AND NOT EXISTS (SELECT 1 FROM {p}notifications n WHERE n.destination_id = "
    "m.destination_id AND n.topic = m.topic AND n.consumed = 0) "
    "AND NOT EXISTS (SELECT 1 FROM {p}notifications n WHERE n.message_id = m.message_id) "
    "RETURNING r.function_id), "
    f"handed AS (INSERT INTO {{p}}operation_outputs ({_STEP_COLS}) "
    "SELECT m.destination_id, waiter.function_id, m.recv_step_name, m.message, NULL, NULL, "
    "m.serialization, m.created_at_epoch_ms, m.created_at_epoch_ms FROM m, waiter "
    "ON CONFLICT (workflow_id, function_id) DO NOTHING RETURNING function_id), "
    f"handed_message AS (INSERT INTO {{p}}notifications ({_MESSAGE_COLS}, consumed) "
    f"SELECT {_MESSAGE_COLS}, 1 FROM m, handed RETURNING 1), "
    f"queued AS (INSERT INTO {{p}}notifications ({_MESSAGE_COLS}, consumed) "
    f"SELECT {_MESSAGE_COLS}, 0 FROM m WHERE EXISTS (SELECT 1 FROM go) "
    "AND EXISTS (SELECT 1 FROM dest) AND NOT EXISTS (SELECT 1 FROM handed) "
    "ON CONFLICT (message_id) DO NOTHING RETURNING 1) "
    "SELECT EXISTS (SELECT 1 FROM dest), "
    "(SELECT count(*) FROM queued) + (SELECT count(*) FROM handed_message), "
    "(SELECT function_id FROM handed), "
    "(SELECT pg_notify('perdure', concat_ws('|', 'recv', m.destination_id, h.function_id, "
    f"CASE WHEN {_NOTE_MAX_MESSAGE} >= octet_length(m.message) AND {_NOTE_MAX_ID} >= "
    "octet_length(m.destination_id) THEN m.serialization || '|' || encode(m.message, 'base64') "
    "ELSE '|' END)) FROM m, handed h), "
    "EXISTS (SELECT 1 FROM go)"
)
SEND_OR_HAND_OFF = f"WITH go AS (SELECT 1), {_DELIVER}"
# From a workflow: the sender's step, then the delivery, only if that step was recorded.
SEND_OR_HAND_OFF_RECORDED = f"WITH {_RECORDED_CTE}, go AS (SELECT 1 FROM recorded), {_DELIVER}"
# recv in one statement: the message a sender handed to this position (``done``), else the
# oldest queued one, taken with its step; with neither, the receiver registers as waiting.
# Returns one row: the message (NULLs if none) and whether the workflow was PENDING. A hand-off
# committed after this statement began fails it on the primary key, like any taken position.
CONSUME_OR_WAIT = (
    "WITH r AS (SELECT ?::text AS workflow_id, ?::text AS topic, ?::int AS function_id, "
    "?::text AS function_name, ?::bigint AS started_at, ?::bigint AS completed_at), "
    "live AS (SELECT 1 FROM {p}workflow_status w JOIN r ON w.workflow_id = r.workflow_id "
    "WHERE w.status = 'PENDING'), "
    "done AS (SELECT o.output, o.serialization FROM {p}operation_outputs o JOIN r "
    "ON o.workflow_id = r.workflow_id AND o.function_id = r.function_id "
    "AND o.function_name = r.function_name), "
    "taken AS (UPDATE {p}notifications SET consumed = 1 WHERE seq = (SELECT n.seq "
    "FROM {p}notifications n JOIN r ON n.destination_id = r.workflow_id AND n.topic = r.topic "
    "WHERE n.consumed = 0 ORDER BY n.seq LIMIT 1 FOR UPDATE OF n) "
    "AND EXISTS (SELECT 1 FROM live) AND NOT EXISTS (SELECT 1 FROM done) "
    "RETURNING message, serialization), "
    f"recorded AS (INSERT INTO {{p}}operation_outputs ({_STEP_COLS}) "
    "SELECT r.workflow_id, r.function_id, r.function_name, taken.message, NULL, NULL, "
    "taken.serialization, r.started_at, r.completed_at FROM r, taken), "
    "waiting AS (INSERT INTO {p}recv_waiters (workflow_id, topic, function_id) "
    "SELECT r.workflow_id, r.topic, r.function_id FROM r WHERE EXISTS (SELECT 1 FROM live) "
    "AND NOT EXISTS (SELECT 1 FROM done) AND NOT EXISTS (SELECT 1 FROM taken) "
    "ON CONFLICT (workflow_id, topic) DO UPDATE SET function_id = excluded.function_id) "
    "SELECT COALESCE(done.output, taken.message), "
    "COALESCE(done.serialization, taken.serialization), EXISTS (SELECT 1 FROM live) "
    "FROM (SELECT 1) AS one LEFT JOIN done ON true LEFT JOIN taken ON true"
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
        recv_step_name: str,
        step: StepRow | None = None,
    ) -> Delivery:
        """Hand a message to its blocked receiver, or queue it (see `MessagingStore`).

        Raises `StepRejected` if ``step`` could not be recorded (nothing is sent then).
        """
        fields = (message_id, destination_id, topic or NO_TOPIC, message, serialization, now_ms())
        if self.backend_name != "postgres":
            work = partial(self._send_sqlite, fields=fields, recv_step_name=recv_step_name)
            return cast(Delivery, self._in_step_transaction(step, work))
        if step is not None:
            return self._send_postgres(step, (*fields, recv_step_name))
        try:
            return self._send_postgres(None, (*fields, recv_step_name))
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != UNIQUE_VIOLATION:
                raise
        # A duplicate sent concurrently undid the hand-off: this time the statement finds it.
        return self._send_postgres(None, (*fields, recv_step_name))

    def _send_postgres(self, step: StepRow | None, params: tuple[Any, ...]) -> Delivery:
        if step is None:
            rows, _ = self._autocommit(self._q(SEND_OR_HAND_OFF), params)
        else:  # a taken position (or a concurrent duplicate, which has one) is a conflict
            statement_params = (step.workflow_id, *step_params(step), *params)
            rows, _ = self._one_statement_step(SEND_OR_HAND_OFF_RECORDED, statement_params)
        destination_exists, written, handed_to, _, went_ahead = rows[0]
        if not went_ahead:
            assert step is not None  # noqa: S101 - only a sender's step can stop it
            raise StepRejected(self.unrecorded_reason(step.workflow_id))
        if not destination_exists:
            return Delivery("no_destination")
        return Delivery("sent" if written else "duplicate", handed_to)

    def _send_sqlite(
        self, tx: Statements, fields: tuple[Any, ...], recv_step_name: str
    ) -> Delivery:
        message_id, destination_id, topic, message, serialization, now = fields
        status = tx.run(self._q(core_sql.SELECT_STATUS), (destination_id,))[0]
        if not status:
            return Delivery("no_destination")
        if tx.run(self._q(MESSAGE_EXISTS), (message_id,))[0]:
            return Delivery("duplicate")
        handed_to = None
        queue = (destination_id, topic)
        if status[0][0] == "PENDING" and not tx.run(self._q(PEEK), queue)[0]:
            waiter = tx.run(self._q(TAKE_WAITER), queue)[0]
            if waiter:
                received = StepRow(
                    destination_id, waiter[0][0], recv_step_name, message, None, None,
                    serialization, now, now,
                )  # fmt: skip
                if tx.run(self._q(core_sql.INSERT_STEP), step_params(received))[1] == 1:
                    handed_to = received.function_id
        tx.run(self._q(QUEUE_MESSAGE), (*fields, int(handed_to is not None)))
        return Delivery("sent", handed_to)

    def receive_message(
        self, destination_id: str, topic: str | None, step: StepRow
    ) -> Payload | None:
        """The message handed to ``step``'s position, else the oldest queued one (recording
        ``step`` with it, in the same transaction: a message is consumed exactly once), else
        None after registering the receiver as waiting there.
        """
        if self.backend_name == "postgres":
            return self._consume_or_wait(topic, step)
        # SQLite: a write transaction locks the whole file, so look before taking the lock.
        at = (step.workflow_id, step.function_id)
        handed = [step_row(r) for r in self._autocommit(self._q(core_sql.SELECT_STEP), at)[0]]
        if handed and handed[0].function_name == step.function_name:
            return Payload(handed[0].output, handed[0].serialization)
        if not self.has_message(destination_id, topic):
            self._register_waiter(step.workflow_id, topic or NO_TOPIC, step.function_id)
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

    def _register_waiter(self, workflow_id: str, topic: str, function_id: int) -> None:
        """SQLite: record the receiver's position, writing only if it is not there yet."""
        rows, _ = self._autocommit(self._q(WAITING_AT), (workflow_id, topic))
        if not rows or rows[0][0] != function_id:
            self._autocommit(self._q(REGISTER_WAITER), (workflow_id, topic, function_id))

    def stop_waiting(self, destination_id: str, topic: str | None, function_id: int) -> bool:
        """Withdraw a receiver's registration; False if a sender took it first."""
        params = (destination_id, topic or NO_TOPIC, function_id)
        return self._autocommit(self._q(STOP_WAITING), params)[1] == 1

    def _consume_or_wait(self, topic: str | None, step: StepRow) -> Payload | None:
        params = (
            step.workflow_id, topic or NO_TOPIC, step.function_id, step.function_name,
            step.started_at_epoch_ms, step.completed_at_epoch_ms,
        )  # fmt: skip
        rows, _ = self._one_statement_step(CONSUME_OR_WAIT, params)
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
