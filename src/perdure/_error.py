"""The errors under DBOS's module path ``dbos._error``, for code ported from DBOS."""

from perdure.error import *  # noqa: F403 - re-exports exactly perdure.error's __all__
from perdure.error import __all__ as __all__  # noqa: PLC0414 - the alias marks a re-export
