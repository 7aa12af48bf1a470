"""The printed table (plain text, Markdown-compatible) and the JSON record of a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.stats import Figure
from benchmarks.summary import Cell, Row

DECIMALS = {"ms": 3, "wf/s": 0, "MiB": 1, "x": 2, "s": 2}
# Which way is better, and the words for "perdure better" / "perdure worse".
RATIO_WORDS = {
    "latency": ("faster", "slower"),
    "throughput": ("higher", "lower"),
    "memory": ("smaller", "larger"),
}
HEADERS = ("scenario", "metric", "unit", "perdure", "dbos", "ratio", "perdure/floor", "dbos/floor")


def _number(value: float, unit: str) -> str:
    return f"{value:,.{DECIMALS.get(unit, 3)}f}"


def format_cell(cell: Cell, unit: str) -> str:
    """A figure with its spread over repetitions, ``[low..high]``; or the cell's text."""
    if cell is None:
        return "-"
    if isinstance(cell, str):
        return cell
    text = _number(cell.value, unit)
    if cell.low is not None and cell.high is not None:
        text += f" [{_number(cell.low, unit)}..{_number(cell.high, unit)}]"
    return text


def ratio(row: Row) -> float | None:
    """How many times better perdure is (>1) or worse (<1); None if not comparable."""
    if row.kind not in RATIO_WORDS:
        return None
    if not isinstance(row.perdure, Figure) or not isinstance(row.dbos, Figure):
        return None
    if row.perdure.value <= 0 or row.dbos.value <= 0:
        return None
    if row.kind == "throughput":
        return row.perdure.value / row.dbos.value
    return row.dbos.value / row.perdure.value


def format_ratio(row: Row) -> str:
    """``4.10x faster`` / ``1.20x slower`` etc., or ``n/a``."""
    value = ratio(row)
    if value is None:
        both = row.perdure is not None and row.dbos is not None
        return "n/a" if both and row.kind in RATIO_WORDS else ""
    better, worse = RATIO_WORDS[row.kind]
    if value >= 1:
        return f"{value:.2f}x {better}"
    return f"{1 / value:.2f}x {worse}"


def _floor_multiple(cell: Cell, row: Row, floor_p50: float | None) -> str:
    if floor_p50 is None or row.unit != "ms" or not isinstance(cell, Figure):
        return ""
    return f"{cell.value / floor_p50:.1f}x"


def table_lines(rows: list[Row], floor_p50: float | None) -> list[str]:
    """The table as Markdown-style lines (readable as plain text too)."""
    body = [
        (
            row.scenario,
            row.metric,
            row.unit,
            format_cell(row.perdure, row.unit),
            format_cell(row.dbos, row.unit),
            format_ratio(row),
            _floor_multiple(row.perdure, row, floor_p50),
            _floor_multiple(row.dbos, row, floor_p50),
        )
        for row in rows
    ]
    widths = [max(len(r[i]) for r in (HEADERS, *body)) for i in range(len(HEADERS))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(HEADERS), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [
        line(r) for r in body
    ]


def _cell_json(cell: Cell) -> Any:
    return cell.to_json() if isinstance(cell, Figure) else cell


def write_json(
    path: Path,
    meta: dict[str, Any],
    floor: dict[str, Figure],
    rows: list[Row],
    raw: dict[str, Any],
) -> None:
    """Write the whole run (metadata, floor, summary rows, raw worker results) to ``path``."""
    record = {
        "meta": meta,
        "floor_ms": {name: figure.to_json() for name, figure in floor.items()},
        "rows": [
            {
                "scenario": row.scenario,
                "metric": row.metric,
                "unit": row.unit,
                "kind": row.kind,
                "perdure": _cell_json(row.perdure),
                "dbos": _cell_json(row.dbos),
                "ratio_perdure_advantage": ratio(row),
            }
            for row in rows
        ],
        "raw": raw,
    }
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
