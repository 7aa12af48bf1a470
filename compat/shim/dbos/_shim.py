"""The machinery of the ``dbos`` shim: private modules mapped to Perdure, stand-ins elsewhere.

Every ``dbos.<sub>`` module that is not a file here is made on import: its attributes are
Perdure's public names (``from dbos._dbos import DBOS`` works), Perdure's errors for
``dbos._error``, a few harness values DBOS's ``conftest.py`` reads (below), and for anything
else a stand-in class. A stand-in is harmless to import, to name in ``cast`` or to subclass;
calling it, reading its attributes, arithmetic or ``isinstance`` against it records the use
(with the running test) in the file ``$PERDURE_COMPAT_RECORD`` and raises ``NotMirroredError``
during a test, or gives an inert value while test modules are imported.
"""

from __future__ import annotations

import builtins
import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import types
from typing import Any

import perdure
import perdure._error as perdure_error

# Set by the pytest plugin (perdure_compat_plugin) around each test.
current_test: str | None = None
_record_lock = threading.Lock()
# The real open, taken now: some DBOS tests patch builtins.open while a stand-in is used.
_open = builtins.open


class NotMirroredError(BaseException):
    """A DBOS name Perdure does not mirror was used (a BaseException: no retry loop hides it)."""

    def __init__(self, name: str, kind: str) -> None:
        super().__init__(f"{name} is a DBOS {kind} name that Perdure does not mirror")
        self.name = name
        self.kind = kind


def record(name: str, kind: str) -> None:
    """Note that the running test used ``name`` (kind: "internal" or "public")."""
    path = os.environ.get("PERDURE_COMPAT_RECORD")
    if not path:
        return
    line = json.dumps({"test": current_test, "name": name, "kind": kind})
    try:
        with _record_lock, _open(path, "a", encoding="utf-8") as file:
            file.write(line + "\n")
    except OSError:  # never let the bookkeeping fail a test
        return


class _Inert:
    """What a stand-in gives while test modules are imported (no test running): answers every
    operation with itself, so a module-level constant computed from an internal still lets the
    file collect. The tests that depend on it are classified by the source analysis."""

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def __len__(self) -> int:
        return 0

    def __index__(self) -> int:
        return 0

    def __iter__(self) -> Any:
        return iter(())

    def __repr__(self) -> str:
        return "<inert DBOS internal>"


_OPERATORS = ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "lshift", "rshift")


def _operator(name: str) -> Any:
    def operate(self: Any, other: Any) -> Any:
        if isinstance(self, _Inert):
            return self
        return self._refuse(f"{self._shim_name} (operator {name})")

    return operate


for _name in _OPERATORS:
    for _prefix in ("", "r"):
        setattr(_Inert, f"__{_prefix}{_name}__", _operator(_name))


class _StandInMeta(type):
    _shim_name: str
    _shim_kind: str

    def __getattr__(cls, attribute: str) -> Any:
        # pytest and mock probe objects for private attributes (_mock_name, __test__...).
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        return cls._refuse(f"{cls._shim_name}.{attribute}")

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._refuse(cls._shim_name)

    def __instancecheck__(cls, instance: Any) -> bool:
        return bool(cls._refuse(cls._shim_name))

    def _refuse(cls, name: str) -> Any:
        record(name, cls._shim_kind)
        if current_test is None:
            return _Inert()
        raise NotMirroredError(name, cls._shim_kind)


for _name in _OPERATORS:
    for _prefix in ("", "r"):
        setattr(_StandInMeta, f"__{_prefix}{_name}__", _operator(_name))


def stand_in(name: str, kind: str) -> type:
    """A class standing for a DBOS name Perdure lacks."""
    short = name.rsplit(".", 1)[-1]
    return _StandInMeta(short, (), {"_shim_name": name, "_shim_kind": kind})


def missing_public(name: str) -> Any:
    """``dbos.<name>`` for a public name Perdure does not export."""
    if name.startswith("_"):
        raise AttributeError(name)
    return stand_in(f"dbos.{name}", "public")


# --- What DBOS's conftest.py needs to run at all (not part of any test's API use) -----------


class GlobalParams:
    """dbos._utils.GlobalParams: the conftest resets these after each test; Perdure ignores them."""

    app_version = os.environ.get("DBOS__APPVERSION", "")
    executor_id = os.environ.get("DBOS__VMID") or "local"
    app_name: str | None = None
    dbos_cloud = False


def quote_identifier(name: str) -> str:
    """dbos._utils.quote_identifier."""
    return '"' + name.replace('"', '""') + '"'


_KEPT_TABLES = ("schema_migrations", "notification_key")


def _reset_system_database(url: str, *args: Any, **kwargs: Any) -> None:
    """SystemDatabase.reset_system_database(url, truncate=True) for the conftest: empty
    Perdure's tables (schema ``perdure``), keeping its migrations; drop the database if that
    fails (Perdure creates it again at the next launch)."""
    import psycopg  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415

    from perdure.storage.postgres.connect import psycopg_conninfo  # noqa: PLC0415

    conninfo = psycopg_conninfo(url)
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            # A previous test's leftover connections would block TRUNCATE.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'perdure' "
                    "AND NOT tablename = ANY(%s)",
                    (list(_KEPT_TABLES),),
                )
            ]
            if tables:
                names = sql.SQL(", ").join(sql.Identifier("perdure", t) for t in tables)
                conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(names))
            return
    except psycopg.Error:
        pass
    name = str(psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"])
    maintenance = psycopg.conninfo.make_conninfo(conninfo, dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True) as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))


def _system_database_class() -> type:
    cls = stand_in("dbos._sys_db.SystemDatabase", "internal")
    type.__setattr__(cls, "reset_system_database", staticmethod(_reset_system_database))
    return cls


class DBOSClient(perdure.DBOSClient):
    """Perdure's client, minus DBOS's ``sharding=False``: the conftest's ``client`` fixture
    passes it to every client, and sharding is a Transact-Enterprise feature (CLOUD in the
    table), so refusing it would fail every client test on one keyword."""

    def __init__(self, *args: Any, sharding: bool = False, **kwargs: Any) -> None:
        if sharding:
            raise NotMirroredError("DBOSClient(sharding=True)", "public")
        super().__init__(*args, **kwargs)


# Perdure's names the shim replaces with the adapted class above.
OVERRIDES: dict[str, Any] = {"DBOSClient": DBOSClient}

HARNESS: dict[str, dict[str, Any]] = {
    "dbos._workflow_commands": {"_BACKGROUND_JOBS_INTERVAL_SEC": 1.0},
    "dbos._utils": {"GlobalParams": GlobalParams, "quote_identifier": quote_identifier},
    "dbos._sys_db": {"SystemDatabase": _system_database_class()},
}


def _dbos_global_instance() -> Any:
    """DBOS's pointer to the launched instance, as far as tests/client_collateral.py reads it
    (``_launched``): it registers its queues only once DBOS is launched."""
    runtime = perdure.DBOS._runtime
    if runtime is None:
        return None
    return types.SimpleNamespace(_launched=runtime._engine is not None)


# --- Synthesised modules -------------------------------------------------------------------


def private_module(fullname: str) -> types.ModuleType:
    """The module object for ``dbos.<sub>``, created once."""
    if fullname in sys.modules:
        return sys.modules[fullname]
    module = types.ModuleType(fullname)
    module.__path__ = []  # a package too: dbos._schemas.system_database
    module.__dict__.update(HARNESS.get(fullname, {}))

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if fullname == "dbos._dbos" and name == "_dbos_global_instance":
            return _dbos_global_instance()
        if fullname == "dbos._error" and hasattr(perdure_error, name):
            return getattr(perdure_error, name)
        if name in OVERRIDES:
            return OVERRIDES[name]
        if not name.startswith("_") and name in perdure.__all__:
            return getattr(perdure, name)
        return stand_in(f"{fullname}.{name}", "internal")

    module.__getattr__ = __getattr__  # type: ignore[method-assign]  # module-level __getattr__
    sys.modules[fullname] = module
    return module


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return private_module(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class _Finder(importlib.abc.MetaPathFinder):
    """Makes any ``dbos.<sub>`` module that is not a file of the shim."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if not fullname.startswith("dbos.") or fullname == "dbos._shim":
            return None
        return importlib.machinery.ModuleSpec(fullname, _Loader(), is_package=True)


def install() -> None:
    """Register the finder after the path finders, so the shim's real files win."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.append(_Finder())
