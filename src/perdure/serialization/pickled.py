"""Opt-in pickle, plain or signed with an HMAC under a key the database never sees."""

from __future__ import annotations

import hashlib
import hmac
import pickle
from collections.abc import Sequence
from typing import Any

from perdure.error import DBOSSerializationError


class PickleSerializer:
    """Opt-in pickle serializer: stores almost any Python object.

    Reading a pickle runs code named in it, so only use it when nobody untrusted can write
    to the system database.
    """

    name = "pickle"
    protocol = pickle.HIGHEST_PROTOCOL

    def dumps(self, value: Any) -> bytes:
        """Pickles `value`."""
        return pickle.dumps(value, protocol=self.protocol)

    def loads(self, data: bytes) -> Any:
        """Unpickles `data`."""
        return pickle.loads(data)  # noqa: S301 - opt-in; the database is trusted by config


class SignedPickleSerializer:
    """Pickle whose every payload carries an HMAC-SHA256 under a key the database never sees.

    A payload whose MAC does not verify under one of the keys is refused before unpickling, so
    whoever can write rows but does not hold a key cannot make a process run code. The first
    key signs; every key verifies (list a new key first to rotate, drop the old one once no
    unfinished workflow holds payloads it signed). The MAC proves who wrote the bytes, not
    where: a holder of write access could copy one signed payload over another.

    Args:
        keys: Secret keys, each at least `MIN_KEY_BYTES` long.
    """

    name = "signed-pickle"
    MIN_KEY_BYTES = 16
    _MAC_BYTES = hashlib.sha256().digest_size

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(len(key) < self.MIN_KEY_BYTES for key in keys):
            raise ValueError(f"signing keys must be at least {self.MIN_KEY_BYTES} bytes long")
        self._keys = tuple(keys)
        self._pickle = PickleSerializer()

    def dumps(self, value: Any) -> bytes:
        """Pickles `value` and puts the MAC of the pickle in front of it."""
        data = self._pickle.dumps(value)
        return hmac.digest(self._keys[0], data, hashlib.sha256) + data

    def loads(self, data: bytes) -> Any:
        """Unpickles `data` if its MAC verifies under one of the keys.

        Raises:
            DBOSSerializationError: The MAC does not verify; nothing was unpickled.
        """
        mac, body = data[: self._MAC_BYTES], data[self._MAC_BYTES :]
        for key in self._keys:
            if hmac.compare_digest(mac, hmac.digest(key, body, hashlib.sha256)):
                return self._pickle.loads(body)
        raise DBOSSerializationError(
            "its signature does not verify under any configured pickle_signing_key, so it was "
            "not unpickled: the row was not written by a process holding the key (or it was "
            "altered). Configure the key that wrote it; never disable signing to read it."
        )
