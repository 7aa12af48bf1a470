"""What every call to debounce shares, in a launched process or a client: the key, the
window's timing, the options a debounce owns, and the loop that settles one call."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from perdure.clock import now_ms
from perdure.error import DBOSException, DBOSQueueDeduplicatedError
from perdure.logs import get_logger
from perdure.storage.records import Debounced, DebounceRequest
from perdure.storage.store import Store

logger = get_logger(__name__)

# Every debounced workflow has a start time: its mark, which a plain enqueue under the same
# deduplication ID lacks. A period of 0 starts it this soon.
MIN_DELAY_SEC = 0.001


def check_timeout(timeout_sec: float | None) -> float | None:
    """``debounce_timeout_sec`` as a window's cap in seconds; None or 0 means no cap, as in
    DBOS.

    Raises:
        ValueError: Not a number, negative, or not finite.
    """
    if timeout_sec is None or timeout_sec == 0:
        return None
    if not _is_number(timeout_sec) or timeout_sec < 0 or not math.isfinite(timeout_sec):
        raise ValueError(
            "debounce_timeout_sec must be a positive number of seconds (how long after its "
            f"first call a window closes at the latest), or None; got {timeout_sec!r}"
        )
    return float(timeout_sec)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Window:
    """One call's view of the debounce window of ``key``: the workflow waiting on
    ``queue_name`` under the deduplication ID ``"<workflow name>-<key>"`` (DBOS's)."""

    workflow_name: str
    queue_name: str
    key: str
    period_sec: float
    timeout_sec: float | None

    @classmethod
    def create(
        cls,
        workflow_name: str,
        queue_name: str,
        key: str,
        *,
        period_sec: float,
        timeout_sec: float | None,
    ) -> Window:
        """Check the call's key and period.

        Raises:
            ValueError: An empty key, or a period that is negative or not a number.
        """
        if not isinstance(key, str) or not key:
            raise ValueError(f"debounce_key must be a non-empty string, got {key!r}")
        if not _is_number(period_sec) or not period_sec >= 0 or not math.isfinite(period_sec):
            raise ValueError(
                "debounce_period_sec must be a number of seconds >= 0 (how long after the "
                f"latest call the workflow starts), got {period_sec!r}"
            )
        return cls(workflow_name, queue_name, key, float(period_sec), timeout_sec)

    @property
    def deduplication_id(self) -> str:
        """The key as the waiting workflow's deduplication ID."""
        return f"{self.workflow_name}-{self.key}"

    def first_delay_sec(self) -> float:
        """How long a new window's workflow waits: the period, capped by the timeout."""
        delay = self.period_sec
        if self.timeout_sec is not None:
            delay = min(delay, self.timeout_sec)
        return max(delay, MIN_DELAY_SEC)

    def request(self, inputs: bytes, serialization: str) -> DebounceRequest:
        """The store's request for this call, timed now."""
        now = now_ms()
        delay_ms = math.ceil(max(self.period_sec, MIN_DELAY_SEC) * 1000)
        timeout_ms = None if self.timeout_sec is None else math.ceil(self.timeout_sec * 1000)
        return DebounceRequest(
            queue_name=self.queue_name,
            deduplication_id=self.deduplication_id,
            workflow_name=self.workflow_name,
            inputs=inputs,
            serialization=serialization,
            now_epoch_ms=now,
            not_before_epoch_ms=now + delay_ms,
            timeout_ms=timeout_ms,
        )


def refuse_owned_options(
    *,
    deduplication_id: str | None,
    delay_seconds: float | None,
    priority: int | None,
    queue_partition_key: str | None,
    duplication_policy: str | None,
    reuse_policy: str | None,
) -> None:
    """A debounce owns its workflow's deduplication ID (the key) and delay (the period), and
    cannot honour a priority or partition key: refuse each, as DBOS does.

    Raises:
        DBOSException: Naming the option set and why a debounce cannot take it.
    """
    refusals = (
        (deduplication_id is not None, "deduplication_id", "the debounce key is its ID"),
        (delay_seconds is not None, "delay", "the debounce period sets when it starts"),
        (priority is not None, "priority", "debounced workflows have no priority"),
        (
            queue_partition_key is not None,
            "queue partition key",
            "partitioned queues cannot deduplicate, which debouncing needs",
        ),
        (
            duplication_policy == "return-existing",
            "duplication_policy 'return-existing'",
            "the debounce decides what a taken key means",
        ),
        (
            reuse_policy == "reject",
            "workflow_id_reuse_policy 'reject'",
            "calls of one window share their workflow",
        ),
    )
    for is_set, what, why in refusals:
        if is_set:
            raise DBOSException(
                f"Cannot debounce a workflow with a {what} set: {why}. Remove it from "
                "SetEnqueueOptions / SetWorkflowID (or the client's workflow options)."
            )


# One bounce: the outcome's kind, and the workflow it names (for FREE: a new workflow ID, drawn
# inside the bounce so a workflow's recorded bounce replays it).
Bounce = tuple[str, str]


def bounce_once(store: Store, request: DebounceRequest) -> Bounce:
    """Ask the store to bounce the workflow under the request's key (see `settle`)."""
    outcome = store.debounce_workflow(request)
    if outcome.kind is Debounced.FREE or outcome.workflow_id is None:
        return Debounced.FREE.value, str(uuid.uuid4())
    return outcome.kind.value, outcome.workflow_id


def settle(
    window: Window,
    *,
    bounce: Callable[[], Bounce],
    enqueue: Callable[[str], str],
    pinned_id: str | None,
) -> str:
    """Land one call: the ID of the workflow that runs with its arguments.

    ``bounce`` gives the workflow waiting under the key the call's arguments (or frees a key
    whose window closed); ``enqueue(workflow_id)`` starts a new window, enqueueing the
    workflow under the key with ``duplication_policy="return-existing"``, and returns the ID
    of the workflow that holds the key afterwards. If another call started a window in
    between, that is not ours, and the next bounce lands this call on it.

    Raises:
        DBOSQueueDeduplicatedError: The key is held by something other than a debounce of
            this workflow (another workflow's colliding key, or a plain enqueue).
    """
    while True:
        kind, workflow_id = bounce()
        if kind == Debounced.BOUNCED.value:
            logger.debug(
                "Debounce key %r: workflow %s takes the latest call", window.key, workflow_id
            )
            return workflow_id
        if kind == Debounced.HELD.value:
            error = DBOSQueueDeduplicatedError(
                workflow_id, window.queue_name, window.deduplication_id
            )
            error.holder_workflow_id = workflow_id
            raise error
        if kind == Debounced.FREE.value:
            target = pinned_id or workflow_id
            try:
                holder = enqueue(target)
            except DBOSQueueDeduplicatedError:
                continue  # its holder ended as the enqueue looked it up: bounce again
            if holder == target:
                logger.debug("Debounce key %r: workflow %s opens a window", window.key, target)
                return target
        # RETRY, or another call's window came first: bounce again
