"""The shop, version 2: refunds pay through "repay" instead of "pay" (an unsafe change)."""

from __future__ import annotations

from perdure import DBOS
from tests.cli.replay_apps.effects import record
from tests.cli.replay_apps.shop_v1 import lookup, order

__all__ = ["order", "refund"]


@DBOS.step(name="repay")
def repay(amount: int) -> int:
    record("repay")
    return amount


@DBOS.workflow(name="shop.refund")
def refund(order_id: str) -> int:
    return repay(lookup(order_id))
