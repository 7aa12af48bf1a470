"""Loggers that stamp every record with the ID of the workflow it was logged from."""

from __future__ import annotations

import logging
import threading

from perdure.execution.context import current_workflow_id


class WorkflowIdFilter(logging.Filter):
    """Adds ``record.workflow_id`` (empty outside a workflow) so formatters can show it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.workflow_id = current_workflow_id() or ""
        return True


_FILTER = WorkflowIdFilter()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the workflow-ID filter attached (idempotent)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


class FirstOnly:
    """Counts occurrences of one kind of bad input and logs only the first: a flood of it
    (forged notifications, say) must not flood the log too.

    Args:
        logger: Where the first one is logged, as a warning.
        message: The %-format of the warning; `__call__`'s arguments fill it.
    """

    def __init__(self, logger: logging.Logger, message: str) -> None:
        self._logger = logger
        self._message = message
        self._lock = threading.Lock()
        self.count = 0

    def __call__(self, *args: object) -> None:
        with self._lock:
            self.count += 1
            first = self.count == 1
        if first:
            self._logger.warning(self._message, *args)
