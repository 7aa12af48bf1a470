"""Loggers that stamp every record with the ID of the workflow it was logged from."""

from __future__ import annotations

import logging

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
