"""Connections of one backend: statements, transactions, chains, retries and error translation.

The one place that decides what a driver error means. A backend classifies each error (an
`ErrorKind`); this module then retries connection failures with capped backoff for as long as
they last (or up to a wait limit, for clients and launch), retries serialization failures and
deadlocks a few times, and raises everything else as Perdure's own error. Nothing above the
storage package sees a driver exception.

A `Chain` is a multi-part write (a message hand-off, a step and its effect) written once: the
parts are SQL statements that may read earlier parts' returned rows by name (``{@name}``).
PostgreSQL runs a chain as one statement (data-modifying CTEs, one round trip); SQLite runs
its parts in order inside one write transaction, keeping each part's rows in a temporary
table. Parts are written so that both readings agree: a part reads what earlier parts
*returned*, never their effects on tables.
"""

from __future__ import annotations

import abc
import enum
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from perdure.error import DBOSSystemDatabaseError
from perdure.storage.records import ExecutorRecord
from perdure.storage.store import Listening, Liveness, NoteHandler

T = TypeVar("T")
Params = Sequence[Any]
logger = logging.getLogger(__name__)

# Backoff between attempts while the database is unreachable: quick at first, then capped.
FIRST_RETRY_DELAY_SEC = 0.05
MAX_RETRY_DELAY_SEC = 2.0
# Serialization failures and deadlocks resolve by trying again, a few times.
MAX_CONFLICT_RETRIES = 10
# While unreachable, warn at the first failure and then at most this often.
WARN_EVERY_SEC = 10.0


class ErrorKind(enum.Enum):
    """What a driver error means for the statement that raised it."""

    CONNECTION = "connection"  # the database is away (restart, failover, partition): wait
    CONFLICT = "conflict"  # a serialization failure or deadlock: try again at once
    UNIQUE = "unique"  # a unique constraint refused a row: the caller decides
    FATAL = "fatal"  # anything else: retrying cannot help


class UniqueViolation(DBOSSystemDatabaseError):
    """A unique constraint refused a row; store code that expects it catches it."""


class Result(NamedTuple):
    """A statement's rows (empty if it returns none) and how many rows it changed."""

    rows: list[tuple[Any, ...]]
    changed: int


@dataclass(frozen=True)
class Dialect:
    """How a backend spells what differs: table prefix, placeholders, clock, types, locks.

    Statements are written once with ``{p}`` before table names, ``?`` placeholders,
    ``{now}`` for the database's clock in epoch milliseconds, ``{blob}`` / ``{bigint}`` /
    ``{text}`` in casts, and ``{lock}`` / ``{lock:alias}`` / ``{skip_locked}`` where a row
    lock belongs (PostgreSQL only: SQLite's write transactions lock the whole file).
    """

    name: str
    prefix: str
    placeholder: str
    now: str
    blob: str
    bigint: str
    text: str
    lock: str
    skip_locked: str
    # Appended to a text column to compare it in binary (code point) order.
    binary_collation: str
    # Whether claims must lock a queue's row to take turns (SQLite's are serial anyway).
    row_locks: bool
    # Several step checkpoints in one statement (parameters: one array per column), if the
    # backend has one; else they share one transaction.
    batch_steps: str | None = None

    # Statements rendered so far (they are module constants: a bounded set).
    rendered: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def render(self, sql: str) -> str:
        """``sql`` in this dialect."""
        found = self.rendered.get(sql)
        if found is None:
            found = self.rendered[sql] = _render(self, sql)
        return found


_LOCK_OF = re.compile(r"\{lock:(\w+)\}")


def _render(dialect: Dialect, sql: str) -> str:
    if dialect.lock:
        sql = _LOCK_OF.sub(lambda m: f"{dialect.lock} OF {m.group(1)}", sql)
    else:
        sql = _LOCK_OF.sub("", sql)
    return (
        sql.replace("{p}", dialect.prefix)
        .replace("{now}", dialect.now)
        .replace("{blob}", dialect.blob)
        .replace("{bigint}", dialect.bigint)
        .replace("{text}", dialect.text)
        .replace("{lock}", dialect.lock)
        .replace("{skip_locked}", dialect.skip_locked)
        .replace("?", dialect.placeholder)
    )


@dataclass(frozen=True)
class Part:
    """One statement of a `Chain`: it returns rows (a SELECT, or DML with RETURNING) that
    later parts and the final query read as ``{@name}``."""

    name: str
    sql: str


@dataclass(frozen=True)
class Chain:
    """A multi-part write that happens entirely or not at all (see the module docstring)."""

    name: str
    parts: tuple[Part, ...]
    final: str
    part_names: tuple[str, ...] = field(init=False)
    # The parts whose rows a later part or the final query reads.
    read: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "part_names", tuple(p.name for p in self.parts))
        texts = [p.sql for p in self.parts] + [self.final]
        read = {name for name in self.part_names if any("{@" + name + "}" in t for t in texts)}
        object.__setattr__(self, "read", frozenset(read))


class Tx(abc.ABC):
    """Statements inside one transaction; ``attempt`` counts from 1 (2+: a retry)."""

    attempt: int = 1

    @abc.abstractmethod
    def run(self, sql: str, params: Params = ()) -> Result:
        """Run one statement (written as in `Dialect`) inside the transaction."""


class Database(abc.ABC):
    """One backend's connections; subclasses supply the attempts and classify errors.

    Args:
        wait_limit_sec: How long a call keeps retrying while the database is unreachable;
            None (a launched process) waits for as long as it takes.
    """

    dialect: Dialect
    url: str

    def __init__(self, *, wait_limit_sec: float | None) -> None:
        self.wait_limit_sec = wait_limit_sec
        # Test seam: called with the text of every statement sent to the database.
        self.statement_listener: Callable[[str], None] | None = None
        self._closed = threading.Event()
        self._outage_lock = threading.Lock()
        self._unreachable_since: float | None = None
        self._last_warned = 0.0

    # -- what a backend supplies ---------------------------------------------------------------

    @abc.abstractmethod
    def _execute(self, sql: str, params: Params) -> Result:
        """Run one rendered statement in autocommit (one round trip)."""

    @abc.abstractmethod
    def _transact(self, work: Callable[[Tx], T], attempt: int) -> T:
        """Run ``work`` in one write transaction, committing if it returns."""

    @abc.abstractmethod
    def _run_chain(self, chain: Chain, params: Mapping[str, Params]) -> Result:
        """Run a chain atomically; the final query's result."""

    @abc.abstractmethod
    def classify(self, exc: BaseException) -> ErrorKind | None:
        """What a driver error means; None if ``exc`` is not the driver's."""

    @abc.abstractmethod
    def _close_connections(self) -> None:
        """Release every connection."""

    @abc.abstractmethod
    def migrate(self) -> None:
        """Create or upgrade the schema; concurrent callers serialise."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Drop every table Perdure owns."""

    @abc.abstractmethod
    def schema_version(self) -> int | None:
        """The applied migration number, or None if there is no Perdure schema."""

    @abc.abstractmethod
    def open_liveness(self, record: ExecutorRecord) -> Liveness:
        """This process's proof of life (see `Liveness`)."""

    @abc.abstractmethod
    def free_lock_keys(self, keys: tuple[int, ...]) -> set[int]:
        """Which of other processes' lock ``keys`` nobody holds: their holders are gone."""

    @abc.abstractmethod
    def listen(self, on_note: NoteHandler, on_gap: Callable[[], None]) -> Listening | None:
        """See `Store.listen`."""

    @abc.abstractmethod
    def hold_connection(self) -> AbstractContextManager[None]:
        """While open, this thread's statements reuse one connection."""

    @abc.abstractmethod
    def released(self) -> AbstractContextManager[None]:
        """While open, this thread holds no connection; each statement borrows one."""

    # -- what the store uses -----------------------------------------------------------------------

    def run(self, sql: str, params: Params = ()) -> Result:
        """Run one statement in autocommit."""
        rendered = self.dialect.render(sql)
        return self._retrying(lambda _attempt: self._execute(rendered, params))

    def transaction(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` in one transaction; a retry runs it again from the start."""
        return self._retrying(lambda attempt: self._transact(work, attempt))

    def chain(self, chain: Chain, params: Mapping[str, Params]) -> Result:
        """Run a `Chain` with each part's parameters (and the final query's, as "final")."""
        return self._retrying(lambda _attempt: self._run_chain(chain, params))

    def close(self) -> None:
        """Close connections; calls waiting to retry give up at once."""
        self._closed.set()
        self._close_connections()

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed.is_set()

    def _notify_statement(self, sql: str) -> None:
        if self.statement_listener is not None:
            self.statement_listener(sql)

    # -- retries ---------------------------------------------------------------------------------

    def _retrying(self, attempt: Callable[[int], T]) -> T:
        number, conflicts = 0, 0
        delay = FIRST_RETRY_DELAY_SEC
        waiting_since: float | None = None
        while True:
            number += 1
            if self._closed.is_set():
                raise DBOSSystemDatabaseError(
                    "The Perdure system store is closed (DBOS.destroy() was called); this "
                    "operation did not run."
                )
            try:
                result = attempt(number)
            except Exception as exc:
                kind = self.classify(exc)
                if kind is None:
                    raise
                if kind is ErrorKind.CONNECTION and not self._closed.is_set():
                    now = time.monotonic()
                    waiting_since = now if waiting_since is None else waiting_since
                    if (
                        self.wait_limit_sec is not None
                        and now - waiting_since > self.wait_limit_sec
                    ):
                        raise self._unreachable_error(exc) from exc
                    self._note_outage(exc)
                    self._closed.wait(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                    delay = min(delay * 2, MAX_RETRY_DELAY_SEC)
                    continue
                if kind is ErrorKind.CONFLICT and conflicts < MAX_CONFLICT_RETRIES:
                    conflicts += 1
                    self._closed.wait(random.uniform(0, 0.002 * conflicts))  # noqa: S311
                    continue
                raise self._translate(exc, kind) from exc
            if waiting_since is not None:
                self._note_recovered()
            return result

    def _note_outage(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self._outage_lock:
            if self._unreachable_since is None:
                self._unreachable_since = now
            elif now - self._last_warned < WARN_EVERY_SEC:
                return
            self._last_warned = now
            since = now - self._unreachable_since
        logger.warning(
            "System database unreachable for %.0fs (%s); retrying until it is back",
            since,
            _first_line(exc),
        )

    def _note_recovered(self) -> None:
        with self._outage_lock:
            since, self._unreachable_since = self._unreachable_since, None
        if since is not None:
            logger.warning("System database reachable again after %.1fs", time.monotonic() - since)

    def _unreachable_error(self, exc: BaseException) -> DBOSSystemDatabaseError:
        return DBOSSystemDatabaseError(
            f"The system database stayed unreachable for more than {self.wait_limit_sec:.0f}s "
            f"({_first_line(exc)}). Check that it is running and reachable from this host."
        )

    def _translate(self, exc: BaseException, kind: ErrorKind) -> DBOSSystemDatabaseError:
        sqlstate = getattr(exc, "sqlstate", None)
        if kind is ErrorKind.UNIQUE:
            return UniqueViolation(f"Unique constraint refused a row: {_first_line(exc)}", sqlstate)
        code = f" (SQLSTATE {sqlstate})" if sqlstate else ""
        return DBOSSystemDatabaseError(
            f"The system database refused a statement{code}: {_first_line(exc)}. Perdure did "
            "not record it; the workflow concerned stays PENDING and is resumed. If this "
            "repeats, fix the database (disk space, limits) or the value concerned.",
            sqlstate,
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
