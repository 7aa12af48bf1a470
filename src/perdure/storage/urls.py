"""Database URLs as shown in messages and logs: every secret hidden.

A PostgreSQL URL is parsed by libpq's own parser (through psycopg), so a password is found
however it is written: in the user part, percent-encoded, with an ``@`` or ``:`` inside, or as
a ``password=`` query parameter; the URL shown is rebuilt from the parsed parts. Anything that
does not parse is never echoed: only its scheme is.
"""

from __future__ import annotations

import re
from itertools import zip_longest
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

HIDDEN = "***"
# Connection parameters that hold a secret (the rest are names, paths and numbers).
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
_SQLALCHEMY_DRIVER = re.compile(r"^postgres(ql)?(\+\w+)?://")


def redact_url(url: str) -> str:
    """``url`` with its secrets hidden, safe for a log line or an error message."""
    if url.startswith("sqlite:"):
        return url  # a file path: nothing secret
    try:
        params = conninfo_to_dict(_SQLALCHEMY_DRIVER.sub("postgresql://", url))
    except psycopg.Error:
        return f"<a database URL that does not parse, starting {scheme_of(url)!r}>"
    return _render({k: str(v) for k, v in params.items() if v is not None})


def scheme_of(url: object) -> str:
    """What a URL starts with, up to ``://`` (all that is safe to echo of a bad URL)."""
    head, found, _ = (url if isinstance(url, str) else "").partition("://")
    return head + found if found and len(head) <= 30 else "?"


def _render(params: dict[str, str]) -> str:
    user, password = params.pop("user", None), params.pop("password", None)
    hosts = params.pop("host", "").split(",") if "host" in params else []
    ports = params.pop("port", "").split(",") if "port" in params else []
    dbname = params.pop("dbname", None)
    netloc = ""
    if user is not None or password is not None:
        netloc = quote(user or "", safe="") + (f":{HIDDEN}" if password is not None else "") + "@"
    if any(h.startswith("/") or not h for h in hosts):  # a Unix socket: kept in the query
        params = {"host": ",".join(hosts), **({"port": ",".join(ports)} if ports else {}), **params}
    else:
        netloc += ",".join(
            (f"[{h}]" if ":" in h else h) + (f":{p}" if p else "")
            for h, p in zip_longest(hosts, ports, fillvalue="")
        )
    path = "/" + quote(dbname, safe="") if dbname is not None else ""
    shown = {k: HIDDEN if k in SECRET_PARAMETERS else v for k, v in params.items()}
    query = "?" + urlencode(shown, safe="*,/") if shown else ""
    return f"postgresql://{netloc}{path}{query}"
