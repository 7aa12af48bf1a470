"""Where the shop's steps record that they ran: a line per run in ``$SHOP_EFFECTS``, if set."""

from __future__ import annotations

import os


def record(name: str) -> None:
    """Append ``name`` to the effects file (a replay must never get here)."""
    path = os.environ.get("SHOP_EFFECTS")
    if path:
        with open(path, "a", encoding="utf-8") as effects:
            effects.write(name + "\n")
