"""A later shop whose orders reserve through "reserve_stock": it cannot take orders recorded by
`versioned_shop` (``perdure workflow move --app`` refuses them, unless forced)."""

from __future__ import annotations

from perdure import DBOS
from tests.crash.programs.versioned_shop import charge, ship


@DBOS.step(name="reserve_stock")
def reserve_stock(item: str) -> str:
    return f"reserved {item}"


@DBOS.workflow(name="shop.order")
def order(item: str) -> str:
    reserve_stock(item)
    charge(item)
    return ship(item)
