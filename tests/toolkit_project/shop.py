"""A small application, written as a user would: the code under test of this project."""

from __future__ import annotations

import threading
from datetime import datetime

from perdure import DBOS

# The application's own configuration; the perdure_app fixture replaces it in tests.
DBOS(config={"name": "shop"})

_lock = threading.Lock()
charges: list[str] = []
shipments: list[str] = []
reports: list[datetime] = []


@DBOS.step()
def charge_card(order: str) -> str:
    with _lock:
        charges.append(order)
    return f"receipt-{order}"


@DBOS.step()
def ship(order: str) -> None:
    with _lock:
        shipments.append(order)


@DBOS.workflow()
def checkout(order: str) -> str:
    receipt = charge_card(order)
    ship(order)
    return receipt


@DBOS.workflow()
def remind_tomorrow(who: str) -> str:
    DBOS.sleep(24 * 3600)
    return f"reminded {who}"


@DBOS.workflow()
def wait_for_approval() -> str:
    approval = DBOS.recv("approval", timeout_seconds=3600)
    return "approved" if approval else "expired"


@DBOS.scheduled("0 0 * * *")  # every day at midnight (UTC)
@DBOS.workflow()
def daily_report(scheduled_time: datetime, actual_time: datetime) -> None:
    with _lock:
        reports.append(scheduled_time)


def reset() -> None:
    """Forget what earlier tests did."""
    with _lock:
        charges.clear()
        shipments.clear()
        reports.clear()
