"""System database URLs as shown in messages and logs: passwords hidden."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``url`` with its password hidden, in the user part and in the query string."""
    if url.startswith("sqlite:"):
        return url  # a file path: nothing secret
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        # The last "@" ends the user part: a password may itself contain "@".
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            user = user.split(":", 1)[0] + ":***"
        netloc = f"{user}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [(k, "***" if k.lower() == "password" else v) for k, v in pairs]
        query = urlencode(masked, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
