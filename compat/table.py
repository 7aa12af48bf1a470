"""``python -m compat table``: regenerate ``compat/TABLE.md``, every difference with its reason.

Introspects each dbos version in its own virtualenv (``introspect.py``) and Perdure in this
interpreter, diffs the dumps (``surface.py``), and gives each difference the reason written
for it in ``reasons.toml``. A difference without one is UNEXPLAINED; ``--check`` then exits 1.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compat import venvs
from compat.surface import Difference, compare

# The standard library's TOML reader: the compatibility tooling needs Python 3.11 or later
# (imported by name, as mypy checks against Python 3.10).
tomllib = importlib.import_module("tomllib")

HERE = Path(__file__).resolve().parent
INTROSPECT = HERE / "introspect.py"
REASONS = HERE / "reasons.toml"
TABLE = HERE / "TABLE.md"
DEFAULT_VERSIONS = ("3.4.0", "2.31.1")
# Order of the table's sections; UNEXPLAINED first, as it is what needs work.
RANKS = ("UNEXPLAINED", "BREAKS", "MINOR", "CLOUD", "INTENDED", "EXTRA")
RANK_MEANINGS = {
    "UNEXPLAINED": "no reason written yet: a gap being closed, or a reason to write",
    "BREAKS": "common DBOS code fails or misbehaves on Perdure",
    "MINOR": "a rarely used feature or call form differs",
    "CLOUD": "a DBOS Conductor, Cloud or Transact-Enterprise feature, out of scope",
    "INTENDED": "Perdure differs on purpose",
    "EXTRA": "Perdure offers more than DBOS",
}


@dataclass(frozen=True)
class Reason:
    """A reviewed explanation of one difference (or of a pattern of them)."""

    key: str
    rank: str
    reason: str


@dataclass
class Row:
    """One difference, with the dbos versions it holds against and its reason."""

    id: str
    kind: str
    subject: str
    details: dict[str, str] = field(default_factory=dict)
    reason: Reason | None = None

    @property
    def rank(self) -> str:
        return self.reason.rank if self.reason else "UNEXPLAINED"


def load_reasons(path: Path = REASONS) -> list[Reason]:
    """The reasons file: one table per difference ID (or fnmatch pattern of IDs)."""
    with path.open("rb") as file:
        data = tomllib.load(file)
    reasons = []
    for key, entry in data.items():
        rank = entry.get("rank")
        if rank not in RANKS[1:] or not entry.get("reason"):
            raise ValueError(f"{path}: [{key!r}] needs a reason and a rank out of {RANKS[1:]}")
        reasons.append(Reason(key=key, rank=rank, reason=" ".join(entry["reason"].split())))
    return reasons


def match(difference_id: str, reasons: list[Reason]) -> Reason | None:
    """The reason for an ID: its exact key, else the longest pattern that matches it."""
    for reason in reasons:
        if reason.key == difference_id:
            return reason
    patterns = [r for r in reasons if fnmatch.fnmatchcase(difference_id, r.key)]
    return max(patterns, key=lambda r: (len(r.key), r.key)) if patterns else None


def _run_json(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 - our own interpreters and script
        command, capture_output=True, text=True, check=False, cwd=venvs.ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def dumps(versions: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Perdure's dump and one dump per dbos version."""
    theirs = {v: _run_json([str(venvs.dbos_python(v)), str(INTROSPECT), "dbos"]) for v in versions}
    names = sorted({name for dump in theirs.values() for name in dump["all"]})
    ours = _run_json([sys.executable, str(INTROSPECT), "perdure", *names])
    return ours, theirs


def rows(found: dict[str, list[Difference]], reasons: list[Reason]) -> list[Row]:
    """Merge the differences of all versions by ID and attach the reasons."""
    merged: dict[str, Row] = {}
    for version, differences in found.items():
        for difference in differences:
            row = merged.setdefault(
                difference.id,
                Row(id=difference.id, kind=difference.kind, subject=difference.subject),
            )
            row.details[version] = difference.detail
    for row in merged.values():
        row.reason = match(row.id, reasons)
    return sorted(merged.values(), key=lambda r: (RANKS.index(r.rank), r.id))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _detail(row: Row, versions: tuple[str, ...]) -> str:
    texts = set(row.details.values())
    if len(texts) == 1:
        return texts.pop()
    return "; ".join(f"{v}: {row.details[v]}" for v in versions if v in row.details)


def render(
    table_rows: list[Row], versions: tuple[str, ...], ours: dict[str, Any], stale: list[str]
) -> str:
    """The Markdown of TABLE.md (no timestamps, so a rerun without changes diffs empty)."""
    counts = Counter(row.rank for row in table_rows)
    lines = [
        "# Perdure and the DBOS Transact API: every remaining difference",
        "",
        "Generated by `python -m compat table` from introspection of dbos "
        + " and ".join(versions)
        + " (each in its own",
        "virtualenv) and of this checkout of Perdure. Do not edit: change Perdure, or write the",
        "reason into `compat/reasons.toml`, and regenerate.",
        "",
        "| rank | meaning | rows |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {rank} | {RANK_MEANINGS[rank]} | {counts.get(rank, 0)} |" for rank in RANKS]
    lines += [f"| total | | {len(table_rows)} |", ""]
    lines += [
        "ID kinds: `missing-name`, `missing-member`, `missing-param`, `param-via-kwargs` (Perdure",
        "accepts it only through `**kwargs`), `renamed-param`, `param-kind` (positional vs",
        "keyword), `default`, `async`, `missing-key` (TypedDict), `key-required`,",
        "`missing-enum-member`, `enum-value`, `bases` (builtins, enum and exported classes in the",
        "MRO), `type`, `member-kind`, `not-in-all`, their `extra-` counterparts, and",
        "`extra-required-param` (a parameter DBOS code cannot know to pass). The",
        "`versions` column names the dbos versions the difference holds against.",
    ]
    for rank in RANKS:
        section = [row for row in table_rows if row.rank == rank]
        if not section:
            continue
        lines += ["", f"## {rank} ({len(section)})", ""]
        lines += ["| ID | versions | detail | reason |", "| --- | --- | --- | --- |"]
        for row in section:
            present = ", ".join(v for v in versions if v in row.details)
            reason = row.reason.reason if row.reason else "UNEXPLAINED"
            lines.append(
                f"| `{_cell(row.id)}` | {present} | {_cell(_detail(row, versions))} | "
                f"{_cell(reason)} |"
            )
    if stale:
        lines += ["", "## Reasons that match no difference (remove them)", ""]
        lines += [f"- `{key}`" for key in stale]
    lines += ["", f"Perdure version: {ours['version']}.", ""]
    return "\n".join(lines)


def main(versions: tuple[str, ...], *, check: bool, output: Path = TABLE) -> int:
    """Regenerate the table; with ``check``, 1 when a difference has no reason."""
    reasons = load_reasons()
    ours, theirs = dumps(versions)
    found = {version: compare(theirs[version], ours) for version in versions}
    table_rows = rows(found, reasons)
    used = {row.reason.key for row in table_rows if row.reason}
    # dbos-test: keys explain failing tests of DBOS's suite (dbos_tests.py), not differences.
    stale = sorted(r.key for r in reasons if r.key not in used and not r.key.startswith("dbos-"))
    output.write_text(render(table_rows, versions, ours, stale))
    counts = Counter(row.rank for row in table_rows)
    summary = ", ".join(f"{rank} {counts.get(rank, 0)}" for rank in RANKS)
    sys.stdout.write(f"{output}: {len(table_rows)} differences ({summary})\n")
    for key in stale:
        sys.stdout.write(f"stale reason (matches no difference): {key}\n")
    if check and counts.get("UNEXPLAINED"):
        sys.stdout.write(f"--check: {counts['UNEXPLAINED']} differences have no reason\n")
        return 1
    return 0
