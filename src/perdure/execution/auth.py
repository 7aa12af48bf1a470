"""Who the running code acts for: the authenticated user and roles of DBOS's RBAC, recorded
with each workflow so its recovery (and its children) act for the same identity."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, TypeVar

from perdure.error import DBOSNotAuthorizedError
from perdure.storage.records import WorkflowRow

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Authentication:
    """An identity: the user, the roles granted to them, and the role a function assumed."""

    user: str | None = None
    roles: tuple[str, ...] | None = None
    assumed_role: str | None = None


NOBODY = Authentication()
_current: ContextVar[Authentication] = ContextVar("perdure_auth", default=NOBODY)


def current_auth() -> Authentication:
    """The identity the running code acts for (`NOBODY` if none was set)."""
    return _current.get()


def set_auth(auth: Authentication) -> Token[Authentication]:
    """Act for ``auth`` from here on in this context; undo with `reset_auth`."""
    return _current.set(auth)


def reset_auth(token: Token[Authentication]) -> None:
    """Undo `set_auth`."""
    _current.reset(token)


@contextmanager
def acting_as(auth: Authentication) -> Iterator[None]:
    """Act for ``auth`` inside the block (a workflow's recorded identity while it runs)."""
    token = _current.set(auth)
    try:
        yield
    finally:
        _current.reset(token)


def recorded_auth(row: WorkflowRow) -> Authentication:
    """The identity a workflow was started with, as its row records it."""
    anonymous = row.authenticated_user is None and row.authenticated_roles is None
    if anonymous and row.assumed_role is None:
        return NOBODY  # the common case, without building a new identity
    roles = None if row.authenticated_roles is None else json.loads(row.authenticated_roles)
    return Authentication(row.authenticated_user, roles_of(roles), row.assumed_role)


def roles_of(roles: Any) -> tuple[str, ...] | None:
    """``roles`` as a tuple of strings, or None; refuses anything else."""
    if roles is None:
        return None
    if isinstance(roles, str) or not all(isinstance(r, str) for r in roles):
        raise TypeError(f"roles must be a list of role names, not {roles!r}")
    return tuple(roles)


class DBOSContextSetAuth:
    """Act for ``user`` with ``roles`` inside the block: workflows started there record this
    identity (and keep it through recovery), and ``@DBOS.required_roles`` checks it."""

    def __init__(self, user: str | None, roles: list[str] | None) -> None:
        self.auth = Authentication(user, roles_of(roles))
        self._token: Token[Authentication] | None = None

    def __enter__(self) -> DBOSContextSetAuth:
        if self._token is not None:
            raise RuntimeError("A DBOSContextSetAuth block cannot be entered twice at once.")
        self._token = _current.set(self.auth)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._token is not None  # noqa: S101 - __exit__ follows __enter__
        token, self._token = self._token, None
        _current.reset(token)


class DBOSContextEnsure:
    """DBOS's guarantee that a context exists; Perdure always has one, so this block only
    exists for code written for DBOS."""

    def __enter__(self) -> DBOSContextEnsure:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


def check_roles(name: str, required: tuple[str, ...]) -> str:
    """The first of ``required`` the current identity holds; raises if it holds none.

    Raises:
        DBOSNotAuthorizedError: No identity, or none of the roles.
    """
    roles = current_auth().roles
    if roles is None:
        raise DBOSNotAuthorizedError(
            f"{name!r} requires one of the roles {', '.join(required)}, but it was called "
            "without an authenticated identity: call it inside DBOSContextSetAuth(user, roles) "
            "(or after DBOS.set_authentication)."
        )
    for role in required:
        if role in roles:
            return role
    raise DBOSNotAuthorizedError(
        f"{name!r} requires one of the roles {', '.join(required)}; the current user "
        f"{current_auth().user!r} has {', '.join(roles) or 'none'}."
    )


def with_required_roles(func: F, required: tuple[str, ...], name: str | None = None) -> F:
    """``func`` checking the current identity for one of ``required`` roles at each call,
    and assuming the first it holds while it runs."""
    label: str = name or getattr(func, "__qualname__", None) or repr(func)

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def checked_async(*args: Any, **kwargs: Any) -> Any:
            role = check_roles(label, required)
            with acting_as(replace(current_auth(), assumed_role=role)):
                return await func(*args, **kwargs)

        checked: Any = checked_async
    else:

        @functools.wraps(func)
        def checked_sync(*args: Any, **kwargs: Any) -> Any:
            role = check_roles(label, required)
            with acting_as(replace(current_auth(), assumed_role=role)):
                return func(*args, **kwargs)

        checked = checked_sync
    checked.__perdure_required_roles__ = required
    return checked  # type: ignore[no-any-return]
