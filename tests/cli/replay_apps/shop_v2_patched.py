"""The shop, version 2 done safely: refunds recorded before the patch keep paying by "pay"."""

from __future__ import annotations

from perdure import DBOS
from tests.cli.replay_apps.shop_v1 import lookup, order, pay
from tests.cli.replay_apps.shop_v2 import repay

__all__ = ["order", "refund"]


@DBOS.workflow(name="shop.refund")
def refund(order_id: str) -> int:
    amount = lookup(order_id)
    if DBOS.patch("repay"):
        return repay(amount)
    return pay(amount)
