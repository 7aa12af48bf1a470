"""A ``dbos`` package that is Perdure, to run DBOS's own test suite against Perdure.

Put ``compat/shim`` first on ``PYTHONPATH`` in a virtualenv without the real dbos (``python -m
compat dbos-tests`` does). ``from dbos import X`` gives Perdure's ``X``; a public name Perdure
lacks, or any private module such as ``dbos._sys_db``, gives a stand-in that records its use
and raises ``NotMirroredError`` when used (see ``_shim.py``).
"""

from perdure import *  # noqa: F403 - the shim's whole point: DBOS's names are Perdure's
from perdure import __all__ as _perdure_all

from . import _shim

__all__ = list(_perdure_all)
_shim.install()
error = _shim.private_module("dbos._error")
# Adapted for DBOS's conftest (see _shim.DBOSClient); a subclass of Perdure's.
DBOSClient = _shim.DBOSClient  # type: ignore[misc]  # replaces the star-imported class


def __getattr__(name: str) -> object:
    return _shim.missing_public(name)
