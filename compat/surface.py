"""The differences between two API dumps (see ``introspect.py``), each with a stable ID.

An ID names the kind of difference, the thing it is about and, for parameters, keys and enum
members, which one: ``missing-param:DBOS.fork_workflow:queue_name``. The same difference found
against two dbos versions has the same ID, so one reason in ``reasons.toml`` covers both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Member kinds that read alike from user code: an annotated attribute and a property.
_KIND_GROUPS = {
    "attribute": "instance data",
    "property": "instance data",
    "classproperty": "class data",
    "method": "instance method",
    "classmethod": "class method",
}
_POSITIONAL = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")
_VAR_NAMES = {"VAR_POSITIONAL": "*args", "VAR_KEYWORD": "**kwargs"}
# introspect.UNPACKED: a keyword of an Unpack[TypedDict], whose default cannot be known.
UNPACKED = "<from an Unpack[TypedDict]>"


@dataclass(frozen=True)
class Difference:
    """One way Perdure's surface differs from one dbos version's."""

    id: str
    kind: str
    subject: str
    detail: str


def _diff(kind: str, subject: str, detail: str, item: str | None = None) -> Difference:
    key = f"{kind}:{subject}" if item is None else f"{kind}:{subject}:{item}"
    return Difference(id=key, kind=kind, subject=subject, detail=detail)


def _param_name(param: dict[str, Any]) -> str:
    return str(_VAR_NAMES.get(param["kind"], param["name"]))


def _default_text(param: dict[str, Any]) -> str:
    if param["kind"] in _VAR_NAMES:
        return f"takes {_VAR_NAMES[param['kind']]}"
    return "required" if param["default"] is None else f"default {param['default']}"


def _params(signature: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {_param_name(p): p for p in signature["params"]}


def _renames(
    dbos_params: list[dict[str, Any]],
    perdure_params: list[dict[str, Any]],
    dbos_only: set[str],
    perdure_only: set[str],
) -> dict[str, str]:
    """Positional parameters at the same position under another name: dbos name -> perdure's."""
    dbos_positional = [p["name"] for p in dbos_params if p["kind"] in _POSITIONAL]
    perdure_positional = [p["name"] for p in perdure_params if p["kind"] in _POSITIONAL]
    return {
        old: new
        for old, new in zip(dbos_positional, perdure_positional, strict=False)
        if old in dbos_only and new in perdure_only
    }


def compare_signatures(
    subject: str, dbos: dict[str, Any] | None, perdure: dict[str, Any] | None
) -> Iterator[Difference]:
    """Parameter by parameter: missing, extra, renamed, of another kind, another default."""
    if dbos is None or perdure is None:
        return
    if dbos["async"] != perdure["async"]:
        detail = f"dbos: {'async' if dbos['async'] else 'sync'}; perdure: the other"
        yield _diff("async", subject, detail)
    ours, theirs = _params(perdure), _params(dbos)
    dbos_only = set(theirs) - set(ours)
    perdure_only = set(ours) - set(theirs)
    renames = _renames(dbos["params"], perdure["params"], dbos_only, perdure_only)
    for old, new in sorted(renames.items()):
        yield _diff("renamed-param", subject, f"dbos `{old}`, perdure `{new}`", f"{old}->{new}")
    for name in sorted(dbos_only - set(renames)):
        if "**kwargs" in ours and not name.startswith("*"):
            detail = f"accepted only through **kwargs ({_default_text(theirs[name])} in dbos)"
            yield _diff("param-via-kwargs", subject, detail, name)
        else:
            yield _diff("missing-param", subject, _default_text(theirs[name]) + " in dbos", name)
    for name in sorted(perdure_only - set(renames.values())):
        if "**kwargs" in theirs and not name.startswith("*"):
            continue
        # An extra parameter without a default breaks every call written for DBOS.
        required = ours[name]["default"] is None and ours[name]["kind"] not in _VAR_NAMES
        kind = "extra-required-param" if required else "extra-param"
        yield _diff(kind, subject, _default_text(ours[name]) + " in perdure", name)
    for name in sorted(set(ours) & set(theirs)):
        mine, other = ours[name], theirs[name]
        if mine["kind"] != other["kind"]:
            detail = f"dbos {other['kind']}, perdure {mine['kind']}"
            yield _diff("param-kind", subject, detail, name)
        if mine["default"] != other["default"] and UNPACKED not in (
            mine["default"],
            other["default"],
        ):
            detail = f"dbos {_default_text(other)}, perdure {_default_text(mine)}"
            yield _diff("default", subject, detail, name)


def _compare_members(
    subject: str, dbos: dict[str, Any], perdure: dict[str, Any]
) -> Iterator[Difference]:
    for name in sorted(set(dbos) | set(perdure)):
        qualified = f"{subject}.{name}"
        if name not in perdure:
            yield _diff("missing-member", qualified, dbos[name]["kind"])
            continue
        if name not in dbos:
            yield _diff("extra-member", qualified, perdure[name]["kind"])
            continue
        kinds = (_KIND_GROUPS[dbos[name]["kind"]], _KIND_GROUPS[perdure[name]["kind"]])
        if kinds[0] != kinds[1]:
            yield _diff("member-kind", qualified, f"dbos {kinds[0]}, perdure {kinds[1]}")
        yield from compare_signatures(
            qualified, dbos[name]["signature"], perdure[name]["signature"]
        )


def _compare_keys(
    subject: str, dbos: dict[str, bool], perdure: dict[str, bool]
) -> Iterator[Difference]:
    for key in sorted(set(dbos) | set(perdure)):
        if key not in perdure:
            yield _diff("missing-key", subject, "optional" if not dbos[key] else "required", key)
        elif key not in dbos:
            yield _diff("extra-key", subject, "optional" if not perdure[key] else "required", key)
        elif dbos[key] != perdure[key]:
            detail = f"dbos {'required' if dbos[key] else 'optional'}, perdure the other"
            yield _diff("key-required", subject, detail, key)


def _compare_enum(
    subject: str, dbos: dict[str, str], perdure: dict[str, str]
) -> Iterator[Difference]:
    for name in sorted(set(dbos) | set(perdure)):
        if name not in perdure:
            yield _diff("missing-enum-member", subject, f"value {dbos[name]} in dbos", name)
        elif name not in dbos:
            yield _diff("extra-enum-member", subject, f"value {perdure[name]} in perdure", name)
        elif dbos[name] != perdure[name]:
            detail = f"dbos {dbos[name]}, perdure {perdure[name]}"
            yield _diff("enum-value", subject, detail, name)


def compare_objects(
    subject: str, dbos: dict[str, Any], perdure: dict[str, Any]
) -> Iterator[Difference]:
    """Two descriptions of one exported name."""
    if dbos["type"] != perdure["type"]:
        yield _diff("type", subject, f"dbos {dbos['type']}, perdure {perdure['type']}")
        return
    if "bases" in dbos and set(dbos["bases"]) != set(perdure["bases"]):
        detail = (
            f"dbos {' > '.join(dbos['bases']) or '-'}; "
            f"perdure {' > '.join(perdure['bases']) or '-'}"
        )
        yield _diff("bases", subject, detail)
    if dbos["type"] == "typeddict":
        yield from _compare_keys(subject, dbos["keys"], perdure["keys"])
    elif dbos["type"] == "enum":
        yield from _compare_enum(subject, dbos["members"], perdure["members"])
    elif dbos["type"] == "function":
        yield from compare_signatures(subject, dbos["signature"], perdure["signature"])
    elif dbos["type"] == "class":
        constructor = f"{subject}.__init__"
        yield from compare_signatures(constructor, dbos["constructor"], perdure["constructor"])
        yield from _compare_members(subject, dbos["members"], perdure["members"])


def compare(dbos: dict[str, Any], perdure: dict[str, Any]) -> list[Difference]:
    """Every difference of Perdure's dump from a dbos dump, sorted by ID."""
    found: list[Difference] = []
    for name in sorted(set(dbos["all"]) | set(perdure["all"])):
        if name not in perdure["objects"]:
            found.append(_diff("missing-name", name, dbos["objects"][name]["type"]))
        elif name not in dbos["objects"]:
            found.append(_diff("extra-name", name, perdure["objects"][name]["type"]))
        else:
            if name not in perdure["all"]:
                found.append(_diff("not-in-all", name, "importable, but not in perdure.__all__"))
            found.extend(compare_objects(name, dbos["objects"][name], perdure["objects"][name]))
    errors_d, errors_p = dbos["errors"], perdure["errors"]
    for name in sorted(set(errors_d) | set(errors_p)):
        subject = f"error.{name}"
        if name not in errors_p:
            found.append(_diff("missing-name", subject, errors_d[name]["type"]))
        elif name not in errors_d:
            found.append(_diff("extra-name", subject, errors_p[name]["type"]))
        else:
            found.extend(compare_objects(subject, errors_d[name], errors_p[name]))
    return sorted(found, key=lambda d: d.id)
