"""Plain-text tables for the command line's output."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone

from perdure.management.views import jsonable

# Longer cells are cut, so one wide payload cannot wreck the layout; --json shows everything.
MAX_CELL_WIDTH = 60


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces, under a header line."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [_line(headers, widths), _line(["-" * w for w in widths], widths)]
    lines.extend(_line(row, widths) for row in cells)
    return "\n".join(lines)


def format_fields(pairs: Sequence[tuple[str, object]]) -> str:
    """One ``name  value`` line per field, names aligned."""
    width = max((len(name) for name, _ in pairs), default=0)
    return "\n".join(f"{name.ljust(width)}  {_text(value)}" for name, value in pairs)


def _line(values: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()


def _cell(value: object) -> str:
    text = _text(value).replace("\n", " ")
    return text if len(text) <= MAX_CELL_WIDTH else text[: MAX_CELL_WIDTH - 1] + "…"


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, str):
        return value
    return json.dumps(jsonable(value), ensure_ascii=False)


def iso_time(epoch_ms: int | None) -> str:
    """Epoch milliseconds as an ISO 8601 UTC time (milliseconds precision)."""
    if epoch_ms is None:
        return ""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
