"""Scenario (f): step latency and ``list_workflows`` latency with 200,000 workflows of history.

Running 200,000 workflows would take far longer than the measurement, so the history is
bulk-loaded with SQL instead: one real 3-step workflow is run with a known ID, and every row it
left in the implementation's own schema (``perdure`` or ``dbos``; the tables are discovered, not
hard-coded) is cloned server-side with ``INSERT ... SELECT ... generate_series``, giving each copy
a new workflow ID and an older ``created_at``. The payloads are real ones, so listing the
workflows decodes them as usual.

With the history loaded it also times ``list_workflows(limit=50)`` (the default: oldest first,
payloads loaded) and the operator's form ``list_workflows(limit=50, sort_desc=True,
load_input=False, load_output=False)``; each implementation's command line listing the
workflows, end to end as a subprocess (``perdure --db URL workflow list``, ``dbos workflow list
-s URL``), with its bare start-up (``--help``) for comparison; and, for Perdure, the
``EXPLAIN (ANALYZE, BUFFERS)`` of the SQL behind both listings.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.workloads import Workflows, sync_latencies

HISTORY_WORKFLOWS = (200_000, 20_000)  # normal, --quick
LIST_ITERATIONS = 200
CLI_RUNS = 10
# The two listings measured: the default, and what an operator's view asks for.
LISTINGS: dict[str, dict[str, Any]] = {
    "default": {"limit": 50},
    "newest_no_payloads": {
        "limit": 50,
        "sort_desc": True,
        "load_input": False,
        "load_output": False,
    },
}
TEMPLATE_ID = "bench-history-template"
REPETITIONS = 3

# Per implementation: the schema of its system tables and the name of the workflow-ID column.
SCHEMAS = {"perdure": ("perdure", "workflow_id"), "dbos": ("dbos", "workflow_uuid")}
# Timestamp columns shifted back by ``g`` milliseconds so each copy has its own time.
SHIFTED = ("created_at", "updated_at")


def _tables_with_template(conn: psycopg.Connection[Any], schema: str, id_col: str) -> list[str]:
    """Tables of ``schema`` that have ``id_col`` and hold rows of the template workflow."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.columns "
        "WHERE table_schema = %s AND column_name = %s ORDER BY table_name",
        (schema, id_col),
    ).fetchall()
    found = []
    for (table,) in rows:
        query = sql.SQL("SELECT count(*) FROM {}.{} WHERE {} = %s").format(
            sql.Identifier(schema), sql.Identifier(table), sql.Identifier(id_col)
        )
        count = conn.execute(query, (TEMPLATE_ID,)).fetchone()
        if count and count[0] > 0:
            found.append(table)
    return found


def _clone(conn: psycopg.Connection[Any], schema: str, table: str, id_col: str, copies: int) -> int:
    """Copy the template's rows of ``table`` ``copies`` times; return the rows inserted."""
    columns = [
        name
        for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, table),
        ).fetchall()
    ]
    select: list[sql.Composable] = []
    for column in columns:
        if column == id_col:
            select.append(sql.SQL("'bench-history-' || g::text"))
        elif column in SHIFTED:
            select.append(sql.SQL("t.{} - g").format(sql.Identifier(column)))
        else:
            select.append(sql.SQL("t.{}").format(sql.Identifier(column)))
    statement = sql.SQL(
        "INSERT INTO {schema}.{table} ({columns}) SELECT {select} "
        "FROM {schema}.{table} t CROSS JOIN generate_series(1, %s) g WHERE t.{id} = %s"
    ).format(
        schema=sql.Identifier(schema),
        table=sql.Identifier(table),
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        select=sql.SQL(", ").join(select),
        id=sql.Identifier(id_col),
    )
    return conn.execute(statement, (copies, TEMPLATE_ID)).rowcount


def bulk_load(impl: str, url: str, copies: int) -> dict[str, Any]:
    """Clone the template workflow ``copies`` times in every table holding it; then ANALYZE."""
    schema, id_col = SCHEMAS[impl]
    begin = time.perf_counter()
    inserted: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        tables = _tables_with_template(conn, schema, id_col)
        with conn.transaction():
            for table in tables:
                inserted[table] = _clone(conn, schema, table, id_col, copies)
        for table in tables:
            conn.execute(
                sql.SQL("ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            )
        # Flush the load's dirty pages now rather than in a checkpoint during the measurement.
        conn.execute("CHECKPOINT")
    return {"seconds": time.perf_counter() - begin, "rows": inserted}


def _list_latencies(api: Any, iterations: int, filters: dict[str, Any]) -> list[float]:
    for _ in range(20):
        api.DBOS.list_workflows(**filters)
    samples = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        listed = api.DBOS.list_workflows(**filters)
        samples.append((time.perf_counter_ns() - start) / 1e6)
        if len(listed) != 50:
            raise RuntimeError(f"list_workflows({filters}) returned {len(listed)} workflows")
    return samples


def _cli_commands(impl: str, url: str) -> dict[str, list[str]]:
    """The implementation's console script: listing the workflows, and its bare start-up."""
    script = str(Path(sys.executable).parent / impl)
    if impl == "perdure":
        return {"list": [script, "--db", url, "workflow", "list"], "help": [script, "--help"]}
    return {"list": [script, "workflow", "list", "-s", url], "help": [script, "--help"]}


def _cli_seconds(command: list[str]) -> list[float]:
    """Wall time of ``CLI_RUNS`` runs of ``command`` (after one unmeasured run)."""
    samples = []
    for run in range(CLI_RUNS + 1):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{command} failed: {done.stderr[-2000:]}")
        if run > 0:
            samples.append(elapsed)
    return samples


def _perdure_plans(url: str) -> dict[str, str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the SQL Perdure runs for each listing (its own builder)."""
    from perdure.storage.postgres.database import DIALECT  # noqa: PLC0415 - Perdure only
    from perdure.storage.records import WorkflowQuery  # noqa: PLC0415
    from perdure.storage.sql.management import listing  # noqa: PLC0415

    queries = {
        "default": WorkflowQuery(limit=50),
        "newest_no_payloads": WorkflowQuery(
            limit=50, newest_first=True, with_inputs=False, with_outputs=False
        ),
    }
    plans = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, query in queries.items():
            text, params = listing(query, collate=DIALECT.binary_collation)
            statement = DIALECT.render(text)
            rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", params).fetchall()
            plans[name] = statement + "\n" + "\n".join(str(row[0]) for row in rows)
    return plans


def scale(api: Any, impl: str, url: str, wfs: Workflows, quick: bool) -> dict[str, Any]:
    """Latencies on the empty database, then after loading the history (3 rounds each)."""
    iterations = 200 if quick else 500
    copies = HISTORY_WORKFLOWS[1] if quick else HISTORY_WORKFLOWS[0]
    empty = [sync_latencies(wfs, iterations) for _ in range(REPETITIONS)]
    with api.SetWorkflowID(TEMPLATE_ID):
        wfs.steps(3)
    load = bulk_load(impl, url, copies)
    loaded = [sync_latencies(wfs, iterations) for _ in range(REPETITIONS)]
    lists = {
        name: [_list_latencies(api, LIST_ITERATIONS, filters) for _ in range(REPETITIONS)]
        for name, filters in LISTINGS.items()
    }
    cli = {name: _cli_seconds(command) for name, command in _cli_commands(impl, url).items()}
    return {
        "history_workflows": copies,
        "load": load,
        "empty_ms": empty,
        "history_ms": loaded,
        "list_ms": lists["default"],
        "list_variants_ms": lists,
        "cli_seconds": cli,
        "cli_median_seconds": {name: statistics.median(v) for name, v in cli.items()},
        "plans": _perdure_plans(url) if impl == "perdure" else None,
    }
