"""The shop, version 1: an order reserves, charges and ships; a refund looks up and pays."""

from __future__ import annotations

from perdure import DBOS
from tests.cli.replay_apps.effects import record


@DBOS.step(name="reserve")
def reserve(item: str) -> str:
    record("reserve")
    return f"reserved {item}"


@DBOS.step(name="charge")
def charge(item: str) -> int:
    record("charge")
    return len(item)


@DBOS.step(name="ship")
def ship(item: str) -> str:
    record("ship")
    return f"shipped {item}"


@DBOS.workflow(name="shop.order")
def order(item: str) -> str:
    reserve(item)
    charge(item)
    return ship(item)


@DBOS.step(name="lookup")
def lookup(order_id: str) -> int:
    record("lookup")
    return 10


@DBOS.step(name="pay")
def pay(amount: int) -> int:
    record("pay")
    return amount


@DBOS.workflow(name="shop.refund")
def refund(order_id: str) -> int:
    return pay(lookup(order_id))
