"""Queue definitions: validation of their settings and of enqueue options, and the directory
of the queues this process knows."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from perdure.error import DBOSException
from perdure.execution.context import NextEnqueueOptions
from perdure.queues.limits import FlowLimits
from perdure.storage.records import QueuePlacement, QueueRecord

_LIMITER_KEYS = frozenset({"limit", "period"})
# Workflows resumed or forked by a process that cannot run them (a client, the command line)
# wait here; every launched process serves this queue, whatever it listens to.
INTERNAL_QUEUE_NAME = "_perdure_internal"
_RESERVED_PREFIX = "_perdure"


@dataclass(frozen=True)
class QueueSpec:
    """A validated queue definition. Build it with `QueueSpec.create`."""

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

    @classmethod
    def create(
        cls,
        name: str,
        concurrency: int | None = None,
        limiter: Mapping[str, Any] | None = None,
        *,
        worker_concurrency: int | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
        polling_interval_sec: float = 1.0,
    ) -> QueueSpec:
        """Check every setting; raise ``ValueError`` naming the queue and the fix."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"A queue needs a non-empty string name, got {name!r}")
        if name.startswith(_RESERVED_PREFIX):
            raise ValueError(
                f"Queue name {name!r} is reserved: names starting with {_RESERVED_PREFIX!r} "
                "belong to Perdure's own queues. Choose another name."
            )
        _check_positive_int(name, "concurrency", concurrency)
        _check_positive_int(name, "worker_concurrency", worker_concurrency)
        if (
            concurrency is not None
            and worker_concurrency is not None
            and worker_concurrency > concurrency
        ):
            raise ValueError(
                f"Queue {name!r}: worker_concurrency={worker_concurrency} exceeds "
                f"concurrency={concurrency}, so it could never be reached. Lower "
                "worker_concurrency or raise concurrency."
            )
        rate_limit, rate_period = _parse_limiter(name, limiter)
        if not _is_positive_number(polling_interval_sec):
            raise ValueError(
                f"Queue {name!r}: polling_interval_sec must be a positive number of seconds, "
                f"got {polling_interval_sec!r}"
            )
        return cls(
            name=name,
            concurrency=concurrency,
            worker_concurrency=worker_concurrency,
            rate_limit=rate_limit,
            rate_period_sec=rate_period,
            priority_enabled=bool(priority_enabled),
            partition_queue=bool(partition_queue),
            polling_interval_sec=float(polling_interval_sec),
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
    def limiter(self) -> dict[str, float] | None:
        """The rate limit as given: ``{"limit": n, "period": seconds}``, or None."""
        if self.rate_limit is None or self.rate_period_sec is None:
            return None
        return {"limit": self.rate_limit, "period": self.rate_period_sec}

    @property
    def limits(self) -> FlowLimits:
        """The limits the dequeue loop applies (per partition on a partitioned queue)."""
        period_ms = (
            math.ceil(self.rate_period_sec * 1000) if self.rate_period_sec is not None else None
        )
        return FlowLimits(self.concurrency, self.worker_concurrency, self.rate_limit, period_ms)

    def placement(self, options: NextEnqueueOptions, *, now_ms: int) -> QueuePlacement:
        """Where an enqueue with ``options`` puts a workflow; raises if they do not fit."""
        key = options.queue_partition_key
        if self.partition_queue and key is None:
            raise DBOSException(
                f"Queue {self.name!r} is partitioned: enqueue inside "
                "SetEnqueueOptions(queue_partition_key=...) to say which partition."
            )
        if not self.partition_queue and key is not None:
            raise DBOSException(
                f"Cannot enqueue with queue_partition_key {key!r} on queue {self.name!r}: it "
                "is not partitioned. Create it with partition_queue=True, or drop the key."
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
        )


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
            f"Queue {queue!r}: {what} must be a positive integer or None (no limit), got {value!r}"
        )


def _parse_limiter(
    queue: str, limiter: Mapping[str, Any] | None
) -> tuple[int | None, float | None]:
    if limiter is None:
        return None, None
    if not isinstance(limiter, Mapping) or set(limiter) != _LIMITER_KEYS:
        raise ValueError(
            f"Queue {queue!r}: limiter must be a dict with exactly the keys 'limit' and "
            f"'period', e.g. {{'limit': 10, 'period': 1.0}} (10 starts per second); got "
            f"{limiter!r}"
        )
    limit, period = limiter["limit"], limiter["period"]
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(
            f"Queue {queue!r}: limiter 'limit' must be a positive integer (starts per period), "
            f"got {limit!r}"
        )
    if not _is_positive_number(period):
        raise ValueError(
            f"Queue {queue!r}: limiter 'period' must be a positive number of seconds, "
            f"got {period!r}"
        )
    return limit, float(period)


class QueueDirectory:
    """The queues defined in this process, and which of them its dequeue loop serves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, QueueSpec] = {}
        self._listen: tuple[str, ...] | None = None

    def define(self, spec: QueueSpec) -> QueueSpec:
        """Add a queue; defining it again with the same settings is a no-op.

        Raises:
            ValueError: A queue with this name exists with other settings.
        """
        with self._lock:
            existing = self._queues.setdefault(spec.name, spec)
        if existing != spec:
            raise ValueError(
                f"Queue {spec.name!r} is already defined with other settings ({existing}); "
                f"cannot redefine it as {spec}. Use one definition, or another name."
            )
        return existing

    def get(self, name: str) -> QueueSpec | None:
        """The queue defined under ``name``, or None."""
        with self._lock:
            return self._queues.get(name)

    def all(self) -> list[QueueSpec]:
        """Every queue defined here, by name."""
        with self._lock:
            return sorted(self._queues.values(), key=lambda spec: spec.name)

    def listen(self, names: Iterable[str]) -> None:
        """Serve only these queues (instead of every queue defined here)."""
        with self._lock:
            self._listen = tuple(dict.fromkeys(names))

    @property
    def listened(self) -> tuple[str, ...] | None:
        """The names given to `listen`, or None when every defined queue is served."""
        with self._lock:
            return self._listen

    def served(self) -> list[QueueSpec]:
        """The queues the dequeue loop claims from now."""
        with self._lock:
            if self._listen is None:
                specs = list(self._queues.values())
            else:
                specs = [self._queues[n] for n in self._listen if n in self._queues]
        return sorted(specs, key=lambda spec: spec.name)

    def clear(self) -> None:
        """Forget every queue and the listen list (``DBOS.destroy(destroy_registry=True)``)."""
        with self._lock:
            self._queues.clear()
            self._listen = None
