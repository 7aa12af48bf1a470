"""Debouncing: one execution of a workflow per burst of calls with the same key."""

from perdure.debouncing.client import DebouncerClient
from perdure.debouncing.debouncer import Debouncer

__all__ = ["Debouncer", "DebouncerClient"]
