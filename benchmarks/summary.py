"""Turns the workers' raw results into table rows: one `Row` per metric, both implementations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.runner import RawResults
from benchmarks.stats import Figure, across_reps, median_of, per_step, percentile

NOT_IMPLEMENTED = "n/a (not implemented)"
NOT_MEASURED = "not measured"
FAILED = "error (see stderr)"

Cell = Figure | str | None  # None: this implementation was not asked for
# (metric, unit, kind, figure); kind is latency, throughput, memory or info (no ratio)
Entry = tuple[str, str, str, Figure | str]

LABELS = {
    "a": "(a) sync latency",
    "b": "(b) throughput",
    "c": "(c) queues",
    "d": "(d) wake-up",
    "e": "(e) async latency",
    "f": "(f) history",
    "g": "(g) memory",
}


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    scenario: str
    metric: str
    unit: str
    kind: str
    perdure: Cell
    dbos: Cell


def _latency_entries(label: str, reps: list[list[float]]) -> list[Entry]:
    return [
        (f"{label} p50", "ms", "latency", across_reps(reps, 50)),
        (f"{label} p90", "ms", "latency", across_reps(reps, 90)),
        (f"{label} p99", "ms", "latency", across_reps(reps, 99)),
    ]


def _by_count(
    results: list[dict[str, Any]], key: str = "samples_ms"
) -> dict[str, list[list[float]]]:
    counts = results[0][key].keys()
    return {n: [r[key][n] for r in results] for n in counts}


def entries_a(results: list[dict[str, Any]]) -> list[Entry]:
    """Scenario (a): 0, 1 and 10 no-op steps, and the per-step increment."""
    reps = _by_count(results)
    entries: list[Entry] = []
    for n, noun in (("0", "steps"), ("1", "step"), ("10", "steps")):
        entries += _latency_entries(f"workflow, {n} {noun}", reps[n])
    entries.append(("per-step increment p50", "ms", "latency", per_step(reps["10"], reps["0"], 10)))
    return entries


def entries_b(results: list[dict[str, Any]]) -> list[Entry]:
    """Scenario (b): workflows/s, and the latency of the start_workflow call itself."""
    first = results[0]
    label = f"{first['workflows']} wf x 3 steps, {first['threads']} callers"
    starts = [r["start_ms"] for r in results]
    return [
        (label, "wf/s", "throughput", median_of([r["per_second"] for r in results])),
        ("start_workflow call p50", "ms", "latency", across_reps(starts, 50)),
        ("start_workflow call p99", "ms", "latency", across_reps(starts, 99)),
    ]


def entries_c(results: list[dict[str, Any]]) -> list[Entry]:
    """Scenario (c): queue throughput per number of serving processes, and the enqueue call."""
    entries: list[Entry] = []
    for result in sorted(results, key=lambda r: int(r["processes"])):
        count, n = result["workflows"], result["processes"]
        label = f"{count} queued wf x 3 steps, {n} process{'es' if n > 1 else ''}"
        entries.append((label, "wf/s", "throughput", Figure(result["per_second"])))
        entries.append(
            (
                f"  enqueue call p50, {n} proc",
                "ms",
                "latency",
                Figure(percentile(result["enqueue_ms"], 50)),
            )
        )
    return entries


WAKEUP_LABELS = {
    "recv_in_process": "send -> recv, same process",
    "event_in_process": "set_event -> get_event, same process",
    "recv_cross_process": "send -> recv, other process",
    "event_cross_process": "set_event -> get_event, other process",
}


def entries_d(results: list[dict[str, Any]]) -> list[Entry]:
    """Scenario (d): wake-up latencies, p50 and p99, each variant measured."""
    samples = results[0]["samples_ms"]
    entries: list[Entry] = []
    for key, label in WAKEUP_LABELS.items():
        if key in samples:
            entries.append((f"{label} p50", "ms", "latency", Figure(percentile(samples[key], 50))))
            entries.append((f"{label} p99", "ms", "latency", Figure(percentile(samples[key], 99))))
    return entries


def entries_e(results: list[dict[str, Any]]) -> list[Entry]:
    """Scenario (e): an async workflow with 10 async steps (and 0, for the increment)."""
    reps = _by_count(results)
    return [
        *_latency_entries("async workflow, 10 steps", reps["10"]),
        ("async workflow, 0 steps p50", "ms", "latency", across_reps(reps["0"], 50)),
        ("per async step p50", "ms", "latency", per_step(reps["10"], reps["0"], 10)),
    ]


LIST_LABELS = {
    "default": "list_workflows(limit=50)",
    "newest_no_payloads": "list_workflows(50, desc, no payloads)",
}


def entries_f(results: list[dict[str, Any]]) -> list[Entry]:
    """Scenario (f): the same latencies before and after loading the history."""
    result = results[0]
    empty = _by_count([{"s": r} for r in result["empty_ms"]], "s")
    full = _by_count([{"s": r} for r in result["history_ms"]], "s")
    count = f"{result['history_workflows'] // 1000}k"
    one_empty, one_full = across_reps(empty["1"], 50), across_reps(full["1"], 50)
    step_empty = per_step(empty["10"], empty["0"], 10)
    step_full = per_step(full["10"], full["0"], 10)
    entries: list[Entry] = [
        ("1-step workflow p50, empty db", "ms", "latency", one_empty),
        (f"1-step workflow p50, {count} history", "ms", "latency", one_full),
        ("  history / empty", "x", "info", Figure(one_full.value / one_empty.value)),
        ("per-step increment p50, empty db", "ms", "latency", step_empty),
        (f"per-step increment p50, {count} history", "ms", "latency", step_full),
        ("  history / empty", "x", "info", Figure(step_full.value / step_empty.value)),
    ]
    variants = result.get("list_variants_ms") or {"default": result["list_ms"]}
    for name, label in LIST_LABELS.items():
        reps = variants.get(name)
        figure: Figure | str = NOT_IMPLEMENTED if reps is None else across_reps(reps, 50)
        entries.append((f"{label} p50, {count}", "ms", "latency", figure))
    cli = result.get("cli_median_seconds")
    if cli is not None:
        entries.append(
            (
                f"CLI `workflow list`, median of 10 runs, {count}",
                "s",
                "latency",
                Figure(cli["list"]),
            )
        )
        entries.append(
            ("  CLI start-up alone (--help), median", "s", "latency", Figure(cli["help"]))
        )
    entries.append(("bulk load of the history", "s", "info", Figure(result["load"]["seconds"])))
    return entries


def entries_g(results: list[dict[str, Any]]) -> list[Entry]:
    """Scenario (g): RSS after warm-up, halfway, at the end; growth; peak."""
    result = results[0]
    rss = result["rss_mib"]
    half, total = result["workflows"] // 2, result["workflows"]
    return [
        ("RSS after warm-up", "MiB", "memory", Figure(rss["baseline"])),
        (f"RSS after {half:,} workflows", "MiB", "memory", Figure(rss["after_half"])),
        (f"RSS after {total:,} workflows", "MiB", "memory", Figure(rss["after_all"])),
        (
            f"RSS growth {half:,} -> {total:,}",
            "MiB",
            "info",
            Figure(rss["after_all"] - rss["after_half"]),
        ),
        ("peak RSS (ru_maxrss)", "MiB", "memory", Figure(result["peak_mib"])),
    ]


MEASURED: dict[str, Callable[[list[dict[str, Any]]], list[Entry]]] = {
    "a": entries_a,
    "b": entries_b,
    "c": entries_c,
    "d": entries_d,
    "e": entries_e,
    "f": entries_f,
    "g": entries_g,
}
ABSENT: dict[str, list[tuple[str, str, str]]] = {}


def _impl_entries(raw: RawResults, scenario: str, impl: str) -> list[Entry] | str:
    results = raw.of(scenario, impl)
    if raw.failed(scenario, impl) or not results:
        return FAILED
    return MEASURED[scenario](results)


def build_rows(raw: RawResults, impls: list[str], scenarios: list[str], db: str) -> list[Row]:
    """The table rows for the requested scenarios, in scenario order."""
    rows: list[Row] = []
    for scenario in sorted(scenarios):
        label = LABELS[scenario]
        if scenario in ABSENT:
            for metric, unit, kind in ABSENT[scenario]:
                perdure = NOT_IMPLEMENTED if "perdure" in impls else None
                dbos = NOT_MEASURED if "dbos" in impls else None
                rows.append(Row(label, metric, unit, kind, perdure, dbos))
            continue
        if scenario == "f" and db != "postgres":
            rows.append(Row(label, "postgres only", "", "info", "skipped", "skipped"))
            continue
        per_impl = {impl: _impl_entries(raw, scenario, impl) for impl in impls}
        template = next((e for e in per_impl.values() if not isinstance(e, str)), None)
        if template is None:
            rows.append(Row(label, "all workers failed", "", "info", FAILED, FAILED))
            continue
        for index, (metric, unit, kind, _) in enumerate(template):
            cells: dict[str, Cell] = {}
            for impl in ("perdure", "dbos"):
                entries = per_impl.get(impl)
                if entries is None:
                    cells[impl] = None
                elif isinstance(entries, str):
                    cells[impl] = entries
                else:
                    cells[impl] = entries[index][3]
            rows.append(Row(label, metric, unit, kind, cells["perdure"], cells["dbos"]))
    return rows
