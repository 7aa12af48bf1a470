"""Messages (FIFO per topic), events (latest value per key) and streams (append-only).

Each write is a `Chain`, written once for both backends: the writer's step and its effect
happen together or not at all. Inside a workflow the writer's step is recorded with its
effect, fenced by the writer's owner token; from a step, the enclosing workflow's token fences
the effect alone; from plain code nothing is fenced. The part ``go`` says whether the effect
may happen: a step recorded just now, a fence that holds, or no fence at all.

The send -> recv hand-off: a receiver blocked in ``recv`` registers its position (and owner
token) in ``recv_waiters``. A sender that finds the registration, for the owner that holds the
workflow now and with nothing older queued on the topic, records the message as the receiver's
``recv`` step and stores it consumed (its ID still deduplicates): the receiver returns without
a statement of its own. The step's primary key settles races: a timing-out receiver withdraws
its registration first (waiting for a hand-off in flight) and then reads its position.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from perdure.storage.database import Chain, Database, Part, Tx, UniqueViolation
from perdure.storage.records import (
    BulkDelivery,
    Delivery,
    OutgoingMessage,
    Payload,
    StepRow,
    StreamEntry,
    Unrecorded,
)
from perdure.storage.sql.rows import STEP_COLS, STEP_MARKS, blob, step_params
from perdure.storage.sql.workflows import (
    INSERT_STEP,
    OWNED,
    fence_refusal,
    insert_step_params,
    step_refusal,
)
from perdure.storage.store import WriteRefused

# Stored in place of a missing topic: NULL would need IS NOT DISTINCT FROM in every query.
NO_TOPIC = "__perdure_no_topic__"

# How a write is fenced: inside a workflow its step is recorded with it (``step``); from a
# step the enclosing workflow's token must hold (``fenced``); from plain code, nothing.
WITH_STEP, FENCE_ONLY, UNFENCED = "step", "fenced", "plain"

_MESSAGE_COLS = "message_id, destination_id, topic, message, serialization, created_at_epoch_ms"

_LIVE = Part("live", f"SELECT 1 AS one FROM {{p}}workflow_status WHERE {OWNED}")


def _fence(mode: str, also: str = "") -> tuple[Part, ...]:
    """The parts that decide whether a write's effect may happen: ``go`` has a row if so.

    ``live``: the writer's token holds its PENDING workflow; ``recorded``: its step, recorded
    now (only if ``also`` holds too). A write that did not go ahead was perhaps recorded in an
    earlier attempt whose acknowledgement was lost: its step, found by its token, tells.
    """
    if mode == WITH_STEP:
        recorded = Part(
            "recorded",
            f"INSERT INTO {{p}}operation_outputs ({STEP_COLS}) SELECT {STEP_MARKS} "
            f"WHERE EXISTS (SELECT 1 FROM {{@live}}){also} "
            "ON CONFLICT (workflow_id, function_id) DO NOTHING RETURNING 1 AS one",
        )
        return (_LIVE, recorded, Part("go", "SELECT one FROM {@recorded}"))
    if mode == FENCE_ONLY:
        return (_LIVE, Part("go", "SELECT one FROM {@live}"))
    return (Part("go", "SELECT 1 AS one"),)


def _is_live(mode: str) -> str:
    """The final query's column telling whether the writer's fence held."""
    return "1 = 1" if mode == UNFENCED else "EXISTS (SELECT 1 FROM {@live})"


def _send(mode: str) -> Chain:
    # A sender's step is recorded only with a message: to a workflow that does not exist,
    # nothing.
    dest_exists = " AND EXISTS (SELECT 1 FROM {@dest})"
    return Chain(
        f"send_{mode}",
        (
            Part(
                "dest", "SELECT status, owner_token FROM {p}workflow_status WHERE workflow_id = ?"
            ),
            *_fence(mode, also=dest_exists),
            Part(
                "m",
                "SELECT CAST(? AS {text}) AS message_id, CAST(? AS {text}) AS destination_id, "
                "CAST(? AS {text}) AS topic, CAST(? AS {blob}) AS message, "
                "CAST(? AS {text}) AS serialization, "
                "CAST(? AS {bigint}) AS created_at_epoch_ms, CAST(? AS {text}) AS recv_step_name",
            ),
            Part(
                "older",
                "SELECT 1 AS one FROM {p}notifications WHERE destination_id = ? AND topic = ? "
                "AND consumed = 0 LIMIT 1",
            ),
            Part("dup", "SELECT 1 AS one FROM {p}notifications WHERE message_id = ?"),
            # The registration of a receiver of the owner that holds the destination now.
            Part(
                "waiter",
                "DELETE FROM {p}recv_waiters WHERE workflow_id = ? AND topic = ? "
                "AND EXISTS (SELECT 1 FROM {@go}) AND EXISTS (SELECT 1 FROM {@dest} d "
                "WHERE d.status = 'PENDING' AND d.owner_token = {p}recv_waiters.owner_token) "
                "AND NOT EXISTS (SELECT 1 FROM {@older}) "
                "AND NOT EXISTS (SELECT 1 FROM {@dup}) RETURNING function_id, owner_token",
            ),
            # A position already recorded (a stale registration) leaves the message queued.
            Part(
                "handed",
                f"INSERT INTO {{p}}operation_outputs ({STEP_COLS}) SELECT m.destination_id, "
                "w.function_id, m.recv_step_name, m.message, NULL, NULL, m.serialization, "
                "m.created_at_epoch_ms, m.created_at_epoch_ms, w.owner_token "
                "FROM {@m} m, {@waiter} w WHERE 1 = 1 "
                "ON CONFLICT (workflow_id, function_id) DO NOTHING "
                "RETURNING function_id, owner_token",
            ),
            # No ON CONFLICT here: a duplicate sent concurrently fails the whole statement
            # (undoing the hand-off), and the retry finds the duplicate.
            Part(
                "handed_message",
                f"INSERT INTO {{p}}notifications ({_MESSAGE_COLS}, consumed, handed_to, "
                "handed_token) SELECT m.message_id, m.destination_id, m.topic, m.message, "
                "m.serialization, m.created_at_epoch_ms, 1, h.function_id, h.owner_token "
                "FROM {@m} m, {@handed} h "
                "RETURNING 1 AS one",
            ),
            Part(
                "queued",
                f"INSERT INTO {{p}}notifications ({_MESSAGE_COLS}, consumed) "
                f"SELECT m.message_id, m.destination_id, m.topic, m.message, m.serialization, "
                "m.created_at_epoch_ms, 0 FROM {@m} m WHERE EXISTS (SELECT 1 FROM {@go}) "
                "AND EXISTS (SELECT 1 FROM {@dest}) AND NOT EXISTS (SELECT 1 FROM {@handed}) "
                "ON CONFLICT (message_id) DO NOTHING RETURNING 1 AS one",
            ),
        ),
        f"SELECT EXISTS (SELECT 1 FROM {{@go}}), {_is_live(mode)}, "
        "EXISTS (SELECT 1 FROM {@dest}), "
        "(SELECT COUNT(*) FROM {@queued}) + (SELECT COUNT(*) FROM {@handed_message}), "
        "(SELECT MAX(function_id) FROM {@handed})",
    )


SEND = {mode: _send(mode) for mode in (WITH_STEP, FENCE_ONLY, UNFENCED)}

# recv: the message a sender handed to this position (``done``), else the oldest queued one,
# taken with its step (``recorded``); with neither, the receiver registers as waiting. A
# hand-off committed after this began fails it on the primary key; the retry finds it.
RECEIVE = Chain(
    "receive",
    (
        Part(
            "r",
            "SELECT CAST(? AS {text}) AS workflow_id, CAST(? AS {text}) AS topic, "
            "CAST(? AS {bigint}) AS function_id, CAST(? AS {text}) AS function_name, "
            "CAST(? AS {bigint}) AS at_ms, CAST(? AS {bigint}) AS owner_token",
        ),
        Part("live", f"SELECT 1 AS one FROM {{p}}workflow_status WHERE {OWNED}"),
        Part(
            "done",
            "SELECT output, serialization, owner_token, function_name FROM {p}operation_outputs "
            "WHERE workflow_id = ? AND function_id = ?",
        ),
        Part(
            "taken",
            "UPDATE {p}notifications SET consumed = 1, consumed_by = ? WHERE seq = (SELECT n.seq "
            "FROM {p}notifications n WHERE n.destination_id = ? AND n.topic = ? "
            "AND n.consumed = 0 ORDER BY n.seq LIMIT 1 {lock}) "
            "AND EXISTS (SELECT 1 FROM {@live}) AND NOT EXISTS (SELECT 1 FROM {@done}) "
            "RETURNING message, serialization",
        ),
        Part(
            "recorded",
            f"INSERT INTO {{p}}operation_outputs ({STEP_COLS}) SELECT r.workflow_id, "
            "r.function_id, r.function_name, t.message, NULL, NULL, t.serialization, r.at_ms, "
            "r.at_ms, r.owner_token FROM {@r} r, {@taken} t WHERE 1 = 1 RETURNING 1 AS one",
        ),
        Part(
            "waiting",
            # Registered already (a later poll of the same wait): nothing written at all.
            "INSERT INTO {p}recv_waiters (workflow_id, topic, function_id, owner_token) "
            "SELECT r.workflow_id, r.topic, r.function_id, r.owner_token FROM {@r} r "
            "WHERE EXISTS (SELECT 1 FROM {@live}) AND NOT EXISTS (SELECT 1 FROM {@done}) "
            "AND NOT EXISTS (SELECT 1 FROM {@taken}) AND NOT EXISTS (SELECT 1 FROM "
            "{p}recv_waiters w WHERE w.workflow_id = r.workflow_id AND w.topic = r.topic "
            "AND w.function_id = r.function_id AND w.owner_token = r.owner_token) "
            "ON CONFLICT (workflow_id, topic) "
            "DO UPDATE SET function_id = excluded.function_id, "
            "owner_token = excluded.owner_token RETURNING 1 AS one",
        ),
    ),
    "SELECT d.output, d.serialization, d.owner_token, d.function_name, t.message, "
    "t.serialization, EXISTS (SELECT 1 FROM {@live}) FROM (SELECT 1 AS one) AS x "
    "LEFT JOIN {@done} d ON 1 = 1 LEFT JOIN {@taken} t ON 1 = 1",
)
STOP_WAITING = "DELETE FROM {p}recv_waiters WHERE workflow_id = ? AND topic = ? AND function_id = ?"


def _set_event(mode: str) -> Chain:
    # The history (for a rewind) keeps the last value each position set, when it has one.
    return Chain(
        f"set_event_{mode}",
        (
            *_fence(mode),
            Part(
                "event",
                "INSERT INTO {p}workflow_events (workflow_id, key, value, serialization, "
                "updated_at_epoch_ms) SELECT ?, ?, CAST(? AS {blob}), ?, {now} "
                "WHERE EXISTS (SELECT 1 FROM {@go}) ON CONFLICT (workflow_id, key) DO UPDATE "
                "SET value = excluded.value, serialization = excluded.serialization, "
                "updated_at_epoch_ms = excluded.updated_at_epoch_ms RETURNING 1 AS one",
            ),
            Part(
                "history",
                "INSERT INTO {p}workflow_events_history (workflow_id, function_id, key, value, "
                "serialization) SELECT ?, CAST(? AS {bigint}), ?, CAST(? AS {blob}), ? "
                "WHERE EXISTS (SELECT 1 FROM {@go}) AND CAST(? AS {bigint}) IS NOT NULL "
                "ON CONFLICT (workflow_id, function_id, key) DO UPDATE "
                "SET value = excluded.value, serialization = excluded.serialization "
                "RETURNING 1 AS one",
            ),
        ),
        "SELECT EXISTS (SELECT 1 FROM {@go})",
    )


SET_EVENT = {mode: _set_event(mode) for mode in (WITH_STEP, FENCE_ONLY, UNFENCED)}
GET_EVENTS = (
    "SELECT key, value, serialization FROM {p}workflow_events WHERE workflow_id = ? ORDER BY key"
)
GET_EVENT = (
    "SELECT key, value, serialization FROM {p}workflow_events WHERE workflow_id = ? AND key = ?"
)


def _write_stream(mode: str) -> Chain:
    # The aggregate yields a row (offset 0) even when the stream is empty.
    return Chain(
        f"write_stream_{mode}",
        (
            *_fence(mode),
            Part(
                "entry",
                'INSERT INTO {p}streams (workflow_id, key, "offset", value, serialization, '
                "closed, function_id) SELECT ?, ?, s.next, CAST(? AS {blob}), ?, ?, "
                "CAST(? AS {bigint}) FROM "
                '(SELECT COALESCE(MAX("offset") + 1, 0) AS next FROM {p}streams '
                "WHERE workflow_id = ? AND key = ?) AS s WHERE EXISTS (SELECT 1 FROM {@go}) "
                "RETURNING 1 AS one",
            ),
        ),
        "SELECT EXISTS (SELECT 1 FROM {@go})",
    )


WRITE_STREAM = {mode: _write_stream(mode) for mode in (WITH_STEP, FENCE_ONLY, UNFENCED)}
# Concurrent writers of one stream (async steps of one workflow) may pick the same offset; the
# loser tries again after a short random pause, so a writer that keeps winning (it does not pay
# the failed round trip) cannot starve it.
STREAM_WRITE_ATTEMPTS = 50
STREAM_RETRY_PAUSE_SEC = 0.002  # times the attempt number, at most
READ_STREAM = (
    'SELECT "offset", value, serialization, closed FROM {p}streams '
    'WHERE workflow_id = ? AND key = ? AND "offset" >= ? ORDER BY "offset"'
)
READ_STREAM_LIMITED = READ_STREAM + " LIMIT ?"

# Bulk sends: one transaction, a few statements per message. No hand-off: a receiver blocked in
# recv is woken (each queued message notifies) and takes the messages from the queue in order.
LIVE = f"SELECT 1 FROM {{p}}workflow_status WHERE {OWNED}"
WORKFLOW_EXISTS = "SELECT 1 FROM {p}workflow_status WHERE workflow_id = ?"
QUEUE_MESSAGE = (
    f"INSERT INTO {{p}}notifications ({_MESSAGE_COLS}, consumed) VALUES (?, ?, ?, ?, ?, ?, 0) "
    "ON CONFLICT (message_id) DO NOTHING"
)
# Every workflow forked from one, from those forks, and so on (UNION ends a cycle, should one
# ever exist); the root itself excluded.
FORKS_OF = (
    "WITH RECURSIVE forks (workflow_id) AS (SELECT workflow_id FROM {p}workflow_status "
    "WHERE forked_from = ? UNION SELECT w.workflow_id FROM {p}workflow_status w "
    "JOIN forks f ON w.forked_from = f.workflow_id) "
    "SELECT workflow_id FROM forks WHERE workflow_id <> ? ORDER BY workflow_id"
)


def _fence_params(
    workflow_id: str | None, step: StepRow | None, owner_token: int | None
) -> tuple[str, dict[str, tuple[object, ...]]]:
    """The fence mode of a write, and the parameters of its `_fence` parts."""
    if step is not None:
        live = (step.workflow_id, step.owner_token)
        return WITH_STEP, {"live": live, "recorded": step_params(step)}
    if owner_token is not None:
        return FENCE_ONLY, {"live": (workflow_id, owner_token)}
    return UNFENCED, {}


def _check_fence(
    db: Database,
    went_ahead: bool,
    *,
    workflow_id: str | None,
    step: StepRow | None,
    owner_token: int | None,
) -> bool:
    """After a fenced write: True if its effect happened now, False if it had happened in an
    earlier attempt (or by an earlier owner); raise `WriteRefused` if it must not happen."""
    if went_ahead:
        return True
    if step is not None:
        reason = step_refusal(db, step)
        if reason in (None, Unrecorded.TAKEN):
            return False  # the position's record stands: the effect happened once
        raise WriteRefused(reason)
    assert workflow_id is not None  # noqa: S101 - a fenced write names its workflow
    assert owner_token is not None  # noqa: S101
    raise WriteRefused(fence_refusal(db, workflow_id, owner_token))


def send_message(
    db: Database,
    *,
    message_id: str,
    destination_id: str,
    topic: str | None,
    message: bytes,
    serialization: str,
    created_at: int,
    recv_step_name: str,
    step: StepRow | None,
    owner_token: int | None,
    sender_id: str | None,
) -> Delivery:
    """See `Store.send_message`."""
    queue = (destination_id, topic or NO_TOPIC)
    fields = (message_id, *queue, message, serialization, created_at, recv_step_name)
    mode, fence = _fence_params(sender_id, step, owner_token)
    params = {
        **fence,
        "m": fields,
        "dest": (destination_id,),
        "older": queue,
        "dup": (message_id,),
        "waiter": queue,
    }
    try:
        row = db.chain(SEND[mode], params).rows[0]
    except UniqueViolation:
        # A duplicate sent concurrently undid the hand-off: this time the chain finds it.
        row = db.chain(SEND[mode], params).rows[0]
    went_ahead, live, destination_exists, written, handed_to = row
    if not destination_exists and live:
        # Nothing was sent, so nothing was recorded (a retry finds the same), unless an
        # execution that lost the workflow sent from this position before: that send stands.
        if step is not None and step_refusal(db, step) == Unrecorded.TAKEN:
            return Delivery("sent")
        return Delivery("no_destination")
    if not _check_fence(
        db, bool(went_ahead), workflow_id=sender_id, step=step, owner_token=owner_token
    ):
        return Delivery("sent")  # sent by the attempt whose acknowledgement was lost
    if not destination_exists:
        return Delivery("no_destination")
    return Delivery("sent" if written else "duplicate", handed_to)


class _NoDestination(Exception):
    """Destinations of a bulk send that do not exist: its transaction is rolled back."""

    def __init__(self, missing: tuple[str, ...]) -> None:
        super().__init__(missing)
        self.missing = missing


def send_messages(
    db: Database,
    messages: Sequence[OutgoingMessage],
    *,
    created_at: int,
    to_forks: bool,
    step: StepRow | None,
    owner_token: int | None,
    sender_id: str | None,
) -> BulkDelivery:
    """See `Store.send_messages`."""

    def send_all(tx: Tx) -> tuple[bool, tuple[tuple[str, str | None], ...]]:
        # The fence first: a write that must not happen (or happened before) reads no further.
        if step is not None:
            if tx.run(INSERT_STEP, insert_step_params(step)).changed != 1:
                return False, ()
        elif owner_token is not None and not tx.run(LIVE, (sender_id, owner_token)).rows:
            return False, ()
        destinations = list(dict.fromkeys(m.destination_id for m in messages))
        missing = tuple(d for d in destinations if not tx.run(WORKFLOW_EXISTS, (d,)).rows)
        if missing:
            raise _NoDestination(missing)  # undoes the step recorded above
        forks = {
            d: [r[0] for r in tx.run(FORKS_OF, (d, d)).rows] if to_forks else []
            for d in destinations
        }
        queues: dict[tuple[str, str | None], None] = {}
        for m in messages:
            copies = [(f, f"{m.message_id}>{f}") for f in forks[m.destination_id]]
            for destination, message_id in [(m.destination_id, m.message_id), *copies]:
                row = (message_id, destination, m.topic or NO_TOPIC, m.message, m.serialization)
                tx.run(QUEUE_MESSAGE, (*row, created_at))
                queues[destination, m.topic] = None
        return True, tuple(queues)

    try:
        went_ahead, queues = db.transaction(send_all)
    except _NoDestination as exc:
        return BulkDelivery(missing=exc.missing)
    if not _check_fence(db, went_ahead, workflow_id=sender_id, step=step, owner_token=owner_token):
        return BulkDelivery()  # sent by the attempt whose acknowledgement was lost
    return BulkDelivery(queues)


def receive_message(
    db: Database, destination_id: str, topic: str | None, step: StepRow
) -> Payload | None:
    """See `Store.receive_message`."""
    at = (step.workflow_id, step.function_id)
    params = {
        "r": (
            destination_id, topic or NO_TOPIC, step.function_id, step.function_name,
            step.started_at_epoch_ms, step.owner_token,
        ),
        "live": (step.workflow_id, step.owner_token),
        "done": at,
        "taken": (step.function_id, destination_id, topic or NO_TOPIC),
    }  # fmt: skip
    try:
        row = db.chain(RECEIVE, params).rows[0]
    except UniqueViolation:
        # A sender handed a message to this position meanwhile: now ``done`` finds it.
        row = db.chain(RECEIVE, params).rows[0]
    done_output, done_format, done_token, done_name, taken, taken_format, live = row
    if done_format is not None:
        # The position is recorded: handed to this owner (or by it, in a lost attempt), or by
        # an execution that lost the workflow in the instant before this one's claim.
        if done_token == step.owner_token or (live and done_name == step.function_name):
            return Payload(blob(done_output), done_format)
        raise WriteRefused(step_refusal(db, step) or Unrecorded.LOST)
    if taken_format is not None:
        return Payload(blob(taken), taken_format)
    if not live:
        raise WriteRefused(step_refusal(db, step) or Unrecorded.LOST)
    return None


def stop_waiting(db: Database, destination_id: str, topic: str | None, function_id: int) -> None:
    """See `Store.stop_waiting`."""
    db.run(STOP_WAITING, (destination_id, topic or NO_TOPIC, function_id))


def set_event(
    db: Database,
    workflow_id: str,
    key: str,
    value: bytes,
    serialization: str,
    *,
    step: StepRow | None,
    owner_token: int | None,
    function_id: int | None,
) -> None:
    """See `Store.set_event`."""
    mode, fence = _fence_params(workflow_id, step, owner_token)
    position = step.function_id if step is not None else function_id
    params = {
        **fence,
        "event": (workflow_id, key, value, serialization),
        "history": (workflow_id, position, key, value, serialization, position),
    }
    (went_ahead,) = db.chain(SET_EVENT[mode], params).rows[0]
    _check_fence(db, bool(went_ahead), workflow_id=workflow_id, step=step, owner_token=owner_token)


def get_events(db: Database, workflow_id: str, key: str | None) -> dict[str, Payload]:
    """See `Store.get_events`."""
    if key is None:
        rows = db.run(GET_EVENTS, (workflow_id,)).rows
    else:
        rows = db.run(GET_EVENT, (workflow_id, key)).rows
    return {k: Payload(blob(v), s) for k, v, s in rows}


def write_stream(
    db: Database,
    workflow_id: str,
    key: str,
    value: bytes | None,
    serialization: str,
    *,
    closed: bool,
    step: StepRow | None,
    owner_token: int | None,
    function_id: int | None,
) -> None:
    """See `Store.write_stream`."""
    mode, fence = _fence_params(workflow_id, step, owner_token)
    position = step.function_id if step is not None else function_id
    entry = (workflow_id, key, value, serialization, int(closed), position, workflow_id, key)
    params = {**fence, "entry": entry}
    for attempt in range(1, STREAM_WRITE_ATTEMPTS + 1):
        try:
            (went_ahead,) = db.chain(WRITE_STREAM[mode], params).rows[0]
            break
        except UniqueViolation:
            if attempt == STREAM_WRITE_ATTEMPTS:
                raise
            time.sleep(random.uniform(0, STREAM_RETRY_PAUSE_SEC * attempt))  # noqa: S311 - jitter
    _check_fence(db, bool(went_ahead), workflow_id=workflow_id, step=step, owner_token=owner_token)


def read_stream(
    db: Database, workflow_id: str, key: str, from_offset: int, limit: int | None
) -> list[StreamEntry]:
    """See `Store.read_stream`."""
    if limit is None:
        rows = db.run(READ_STREAM, (workflow_id, key, from_offset)).rows
    else:
        rows = db.run(READ_STREAM_LIMITED, (workflow_id, key, from_offset, limit)).rows
    return [StreamEntry(o, Payload(blob(v), s), bool(c)) for o, v, s, c in rows]
