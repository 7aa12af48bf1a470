"""Reading PostgreSQL notes: only a hand-off signed under the database's key carries a value."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perdure.storage.postgres.notes import NoteReader
from perdure.storage.records import HandedMessage, Payload

KEY = secrets.token_bytes(32)


def signed(channel: str, token: int, fmt: str, message: bytes, key: bytes = KEY) -> str:
    """A hand-off note as the trigger of migration 0010 writes it."""
    body = f"{channel}|{token}|{base64.b64encode(fmt.encode()).decode()}|"
    body += base64.b64encode(message).decode()
    return body + "|" + hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def test_a_signed_hand_off_carries_its_message_and_token() -> None:
    reader = NoteReader(KEY)
    note = signed("recv|a|b|c|3", 42, "json+codec", b'{"x": 1}')
    assert reader.read(note) == (
        "recv|a|b|c|3",
        HandedMessage(Payload(b'{"x": 1}', "json+codec"), 42),
    )
    # Too long to carry: signed, with an empty format and message; the receiver reads its step.
    body = "recv|w|4|42||"
    mac = hmac.new(KEY, body.encode(), hashlib.sha256).hexdigest()
    assert reader.read(f"{body}|{mac}") == ("recv|w|4", None)
    assert reader.forged == 0


def test_a_forged_or_altered_hand_off_is_only_a_hint(caplog: pytest.LogCaptureFixture) -> None:
    reader = NoteReader(KEY)
    genuine = signed("recv|w|3", 42, "json", b'"yes"')
    forgeries = [
        signed("recv|w|3", 42, "json", b'"no"', key=secrets.token_bytes(32)),
        genuine.replace("|42|", "|43|"),  # another execution's token
        genuine[:-1] + ("0" if genuine[-1] != "0" else "1"),
        genuine.rpartition("|")[0] + "|",
    ]
    with caplog.at_level(logging.WARNING):
        for note in forgeries:
            channel, handed = reader.read(note)
            assert handed is None
            assert channel.startswith("recv|w|")
    assert reader.forged == len(forgeries)
    assert len([r for r in caplog.records if "valid signature" in r.getMessage()]) == 1
    assert NoteReader(None).read(genuine) == ("recv|w|3", None)  # no key: nothing trusted


@given(st.text(max_size=300))
def test_any_text_reads_as_a_channel_without_a_value(note: str) -> None:
    channel, handed = NoteReader(KEY).read(note)
    assert handed is None
    assert isinstance(channel, str)


@given(
    channel=st.builds(
        lambda wf, pos: f"recv|{wf}|{pos}", st.text(max_size=50), st.integers(0, 10**6)
    ),
    token=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    fmt=st.text(min_size=1, max_size=20),
    message=st.binary(max_size=200),
)
def test_every_signed_hand_off_reads_back(
    channel: str, token: int, fmt: str, message: bytes
) -> None:
    assert NoteReader(KEY).read(signed(channel, token, fmt, message)) == (
        channel,
        HandedMessage(Payload(message, fmt), token),
    )
