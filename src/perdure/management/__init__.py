"""Operators' view of workflows: list, inspect, cancel, resume, fork, delete, collect garbage."""

from perdure.management.manager import WorkflowManager
from perdure.management.records import StepInfo

__all__ = ["StepInfo", "WorkflowManager"]
