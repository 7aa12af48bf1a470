"""Queue definitions: validation of their settings, of changes to them and of enqueue options,
and the directory of the queues this process declares."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from perdure.error import DBOSException
from perdure.execution.context import NextEnqueueOptions
from perdure.queues.limits import QueueLimits
from perdure.storage.records import QueuePlacement, QueueRecord, QueueReplace

_LIMITER_KEYS = frozenset({"limit", "period"})
# Workflows resumed or forked by a process that cannot run them (a client, the command line)
# wait here; every launched process serves this queue, whatever it listens to.
INTERNAL_QUEUE_NAME = "_perdure_internal"
# Perdure's own queues, and DBOS's (which reserves its prefix likewise).
_RESERVED_PREFIXES = ("_perdure", "_dbos_")

# What registering a queue does when a definition is already stored under its name (DBOS's
# names): replace it only from a process of the latest application version (so the older
# processes of a rolling deploy keep the newer settings), always, or never.
QueueConflictResolution = Literal["update_if_latest_version", "always_update", "never_update"]
ON_CONFLICT: tuple[QueueConflictResolution, ...] = get_args(QueueConflictResolution)
REPLACE_EXISTING: dict[QueueConflictResolution, QueueReplace] = {
    "update_if_latest_version": "if_latest",
    "always_update": "always",
    "never_update": "never",
}
_PARTITION_LIMITS = frozenset(
    {
        "partition_concurrency",
        "partition_worker_concurrency",
        "partition_rate_limit",
        "partition_rate_period_sec",
    }
)


@dataclass(frozen=True)
class QueueSpec:
    """A validated queue definition. Build it with `QueueSpec.create`.

    Its fields are those of the stored `QueueRecord`, whose docstring says what partitioning
    does to the scope of each limit.
    """

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_limit: int | None = None
    rate_period_sec: float | None = None
    # Accepted and stored, as DBOS does: every queue honours priorities (DBOS 2.31 deprecated
    # the flag, 3.x dropped it).
    priority_enabled: bool = False
    partition_queue: bool = False
    polling_interval_sec: float = 1.0
    partition_concurrency: int | None = None
    partition_worker_concurrency: int | None = None
    partition_rate_limit: int | None = None
    partition_rate_period_sec: float | None = None

    @classmethod
    def create(
        cls,
        name: str,
        concurrency: int | None = None,
        limiter: Mapping[str, Any] | None = None,
        *,
        worker_concurrency: int | None = None,
        global_concurrency: int | None = None,
        partition_concurrency: int | None = None,
        partition_worker_concurrency: int | None = None,
        partition_limiter: Mapping[str, Any] | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
        polling_interval_sec: float = 1.0,
    ) -> QueueSpec:
        """Check every setting; raise ``ValueError`` naming the queue and the fix.

        ``global_concurrency`` is DBOS's newer name for ``concurrency``. Any ``partition_*``
        limit makes the queue partitioned; ``partition_queue=True`` without them is DBOS
        2.31's form, under which every limit holds per partition.
        """
        _check_name(name)
        if concurrency is not None and global_concurrency is not None:
            raise ValueError(
                f"Queue {name!r}: concurrency={concurrency} and global_concurrency="
                f"{global_concurrency} are one setting under two names (concurrency is the "
                "deprecated one), so set only one of them."
            )
        partition_limits = (partition_concurrency, partition_worker_concurrency, partition_limiter)
        by_limits = any(limit is not None for limit in partition_limits)
        if partition_queue and by_limits:
            raise ValueError(
                f"Queue {name!r}: partition_queue=True is DBOS 2.31's form of partitioning "
                "(every limit per partition); the partition_* limits partition the queue "
                "already. Drop partition_queue=True."
            )
        if partition_queue and global_concurrency is not None:
            raise ValueError(
                f"Queue {name!r}: under partition_queue=True every limit holds per partition, "
                "so nothing can hold over the whole queue. For a limit per partition and "
                "another over the queue, pass partition_concurrency=... and "
                "global_concurrency=... without partition_queue."
            )
        rate_limit, rate_period = _parse_limiter(name, "limiter", limiter)
        partition_rate, partition_period = _parse_limiter(
            name, "partition_limiter", partition_limiter
        )
        spec = cls(
            name=name,
            concurrency=concurrency if concurrency is not None else global_concurrency,
            worker_concurrency=worker_concurrency,
            rate_limit=rate_limit,
            rate_period_sec=rate_period,
            priority_enabled=bool(priority_enabled),
            partition_queue=bool(partition_queue) or by_limits,
            polling_interval_sec=polling_interval_sec,
            partition_concurrency=partition_concurrency,
            partition_worker_concurrency=partition_worker_concurrency,
            partition_rate_limit=partition_rate,
            partition_rate_period_sec=partition_period,
        )
        spec.check()
        return replace(spec, polling_interval_sec=float(polling_interval_sec))

    def check(self) -> None:
        """Raise ``ValueError`` if a limit is not a positive integer, or can never be reached."""
        for what in (
            "concurrency",
            "worker_concurrency",
            "partition_concurrency",
            "partition_worker_concurrency",
        ):
            _check_positive_int(self.name, what, getattr(self, what))
        if not _is_positive_number(self.polling_interval_sec):
            raise ValueError(
                f"Queue {self.name!r}: polling_interval_sec must be a positive number of "
                f"seconds, got {self.polling_interval_sec!r}"
            )
        for lower, upper in (
            ("worker_concurrency", "concurrency"),
            ("partition_concurrency", "concurrency"),
            ("partition_worker_concurrency", "concurrency"),
            ("partition_worker_concurrency", "partition_concurrency"),
            ("partition_worker_concurrency", "worker_concurrency"),
        ):
            low, high = getattr(self, lower), getattr(self, upper)
            if low is not None and high is not None and low > high:
                raise ValueError(
                    f"Queue {self.name!r}: {lower}={low} exceeds {upper}={high}, so it could "
                    f"never be reached ({upper} must be greater than or equal to {lower}). "
                    f"Lower {lower} or raise {upper}."
                )

    @classmethod
    def from_record(cls, record: QueueRecord) -> QueueSpec:
        """The definition stored in the ``queues`` table."""
        return cls(**{name: getattr(record, name) for name in QueueRecord.__dataclass_fields__})

    def record(self) -> QueueRecord:
        """This definition as stored in the ``queues`` table."""
        return QueueRecord(
            **{name: getattr(self, name) for name in QueueRecord.__dataclass_fields__}
        )

    @property
    def partitioned(self) -> bool:
        """Whether each enqueue names a partition (``queue_partition_key``)."""
        return self.record().partitioned

    @property
    def every_limit_per_partition(self) -> bool:
        """Whether this is DBOS 2.31's ``partition_queue=True`` form (see `QueueRecord`)."""
        return self.record().every_limit_per_partition

    @property
    def limiter(self) -> dict[str, float] | None:
        """The rate limit as given: ``{"limit": n, "period": seconds}``, or None."""
        return _limiter(self.rate_limit, self.rate_period_sec)

    @property
    def partition_limiter(self) -> dict[str, float] | None:
        """The rate limit of each partition: ``{"limit": n, "period": seconds}``, or None."""
        return _limiter(self.partition_rate_limit, self.partition_rate_period_sec)

    @property
    def limits(self) -> QueueLimits:
        """The limits the dequeue loop applies, over the whole queue and over each partition."""
        record = self.record()
        return QueueLimits(record.whole_queue_limits, record.partition_limits)

    def changed(self, setting: str, value: Any) -> QueueSpec:
        """This definition with one setting changed as ``Queue.set_<setting>(value)`` does.

        Raises:
            ValueError: The value is invalid, or could never be reached given the others.
            DBOSException: The change does not fit how the queue is partitioned.
        """
        if setting in ("concurrency", "polling_interval_sec", "priority_enabled"):
            return self._with({setting: value})
        if setting == "partition_queue":
            if self.record().has_partition_limits:
                raise DBOSException(
                    f"Cannot set partition_queue on queue {self.name!r}: its partition_* "
                    "limits partition it. Clear them (set_partition_*(None)) instead."
                )
            return self._with({"partition_queue": bool(value)})
        if self.every_limit_per_partition:
            raise DBOSException(
                f"Cannot set {setting} on queue {self.name!r}: it was registered with "
                "partition_queue=True, under which concurrency, worker_concurrency and the "
                "limiter hold per partition. Change those with set_concurrency, or register "
                "the queue again with partition_* limits."
            )
        if setting in ("limiter", "partition_limiter"):
            prefix = "partition_" if setting == "partition_limiter" else ""
            limit, period = _parse_limiter(self.name, setting, value)
            return self._with({f"{prefix}rate_limit": limit, f"{prefix}rate_period_sec": period})
        fields = {"global_concurrency": "concurrency"}
        field = fields.get(setting, setting)
        if field not in ("concurrency", "worker_concurrency") and field not in _PARTITION_LIMITS:
            raise ValueError(f"Queue {self.name!r} has no setting {setting!r}")
        return self._with({field: value})

    def _with(self, changes: dict[str, Any]) -> QueueSpec:
        spec = replace(self, **changes)
        if _PARTITION_LIMITS & changes.keys():
            # Partitioned by its limits: the stored flag follows them, as DBOS keeps it.
            spec = replace(spec, partition_queue=spec.record().has_partition_limits)
        spec.check()
        if "polling_interval_sec" in changes:
            spec = replace(spec, polling_interval_sec=float(spec.polling_interval_sec))
        return replace(spec, priority_enabled=bool(spec.priority_enabled))

    def placement(self, options: NextEnqueueOptions, *, now_ms: int) -> QueuePlacement:
        """Where an enqueue with ``options`` puts a workflow; raises if they do not fit."""
        key = options.queue_partition_key
        if self.partitioned and key is None:
            raise DBOSException(
                f"Queue {self.name!r} is partitioned: enqueue inside "
                "SetEnqueueOptions(queue_partition_key=...) to say which partition."
            )
        if not self.partitioned and key is not None:
            raise DBOSException(
                f"Cannot enqueue with queue_partition_key {key!r} on queue {self.name!r}: it "
                "is not partitioned. Give it a partition limit (partition_concurrency=...), "
                "or drop the key."
            )
        not_before = None
        if options.delay_seconds:
            not_before = now_ms + math.ceil(options.delay_seconds * 1000)
        return QueuePlacement(
            queue_name=self.name,
            deduplication_id=options.deduplication_id,
            priority=options.priority or 0,
            partition_key=key,
            not_before_epoch_ms=not_before,
            app_version=options.app_version,
            duplication_policy=options.duplication_policy,
        )


def check_on_conflict(name: str, on_conflict: object) -> QueueConflictResolution:
    """``on_conflict`` if it is one of DBOS's three; else ``ValueError``."""
    for known in ON_CONFLICT:
        if on_conflict == known:
            return known
    raise ValueError(
        f"Queue {name!r}: on_conflict must be one of {', '.join(map(repr, ON_CONFLICT))}, "
        f"got {on_conflict!r}"
    )


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"A queue needs a non-empty string name, got {name!r}")
    if name.startswith(_RESERVED_PREFIXES):
        raise ValueError(
            f"Queue name {name!r} is reserved: names starting with "
            f"{' or '.join(map(repr, _RESERVED_PREFIXES))} belong to Perdure's and DBOS's own "
            "queues. Choose another name."
        )


def _limiter(limit: int | None, period: float | None) -> dict[str, float] | None:
    if limit is None or period is None:
        return None
    return {"limit": limit, "period": period}


def _is_positive_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _check_positive_int(queue: str, what: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(
            f"Queue {queue!r}: {what} must be a positive integer (at least 1) or None (no "
            f"limit), got {value!r}"
        )


def _parse_limiter(
    queue: str, what: str, limiter: Mapping[str, Any] | None
) -> tuple[int | None, float | None]:
    if limiter is None:
        return None, None
    if not isinstance(limiter, Mapping) or set(limiter) != _LIMITER_KEYS:
        raise ValueError(
            f"Queue {queue!r}: {what} must be a dict with both 'limit' and 'period' and no "
            f"other key, e.g. {{'limit': 10, 'period': 1.0}} (10 starts per second); got "
            f"{limiter!r}"
        )
    limit, period = limiter["limit"], limiter["period"]
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(
            f"Queue {queue!r}: {what} 'limit' must be a positive integer (starts per period), "
            f"got {limit!r}"
        )
    if not _is_positive_number(period):
        raise ValueError(
            f"Queue {queue!r}: {what} 'period' must be a positive number of seconds, got {period!r}"
        )
    return limit, float(period)


@dataclass(frozen=True)
class Declaration:
    """A queue as this process declares it, and what storing it does to another definition
    stored under its name."""

    spec: QueueSpec
    on_conflict: QueueConflictResolution = "update_if_latest_version"


class QueueDirectory:
    """The queues declared in this process (stored at launch), and which queues it serves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, Declaration] = {}
        self._listen: tuple[str, ...] | None = None

    def define(self, declaration: Declaration, *, redefine: bool = False) -> QueueSpec:
        """Declare a queue; declaring it again with the same settings is a no-op.

        With ``redefine`` (`DBOS.register_queue`) other settings replace the declaration,
        unless its ``on_conflict`` is ``"never_update"``; returns the declaration in force.

        Raises:
            ValueError: Without ``redefine``, a queue with this name has other settings.
        """
        spec = declaration.spec
        with self._lock:
            existing = self._queues.setdefault(spec.name, declaration)
            if existing.spec == spec:
                return existing.spec
            if redefine and declaration.on_conflict != "never_update":
                self._queues[spec.name] = declaration
                return spec
        if redefine:
            return existing.spec
        raise ValueError(
            f"Queue {spec.name!r} is already defined with other settings ({existing.spec}); "
            f"cannot redefine it as {spec}. Use one definition, another name, or "
            "DBOS.register_queue (whose on_conflict says which settings win)."
        )

    def get(self, name: str) -> QueueSpec | None:
        """The queue declared under ``name``, or None."""
        with self._lock:
            found = self._queues.get(name)
        return found.spec if found is not None else None

    def declarations(self) -> list[Declaration]:
        """Every declaration, by name."""
        with self._lock:
            return sorted(self._queues.values(), key=lambda d: d.spec.name)

    def all(self) -> list[QueueSpec]:
        """Every queue declared here, by name."""
        return [declaration.spec for declaration in self.declarations()]

    def forget(self, name: str) -> None:
        """Drop the declaration of ``name`` (`DBOS.delete_queue`)."""
        with self._lock:
            self._queues.pop(name, None)

    def listen(self, names: Iterable[str]) -> None:
        """Serve only these queues (instead of every stored queue)."""
        with self._lock:
            self._listen = tuple(dict.fromkeys(names))

    @property
    def listened(self) -> tuple[str, ...] | None:
        """The names given to `listen`, or None when every stored queue is served."""
        with self._lock:
            return self._listen

    def serves(self, name: str) -> bool:
        """Whether this process's dequeue loop claims from queue ``name`` (once stored)."""
        with self._lock:
            return self._listen is None or name in self._listen

    def clear(self) -> None:
        """Forget every queue and the listen list (``DBOS.destroy(destroy_registry=True)``)."""
        with self._lock:
            self._queues.clear()
            self._listen = None
