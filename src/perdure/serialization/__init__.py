"""Serializers that turn workflow inputs, outputs and errors into stored bytes and back.

``tagged_json``: the safe default; ``pickled``: opt-in pickle, plain or signed;
``interfaces``: the protocols (and DBOS's serializer adapted); ``payloads``: reading and
writing stored values by their recorded format.
"""

from perdure.serialization.interfaces import (
    PayloadCodec,
    Serializer,
    TextSerializer,
    WorkflowSerializationFormat,
    check_serialization_type,
)
from perdure.serialization.payloads import Payloads
from perdure.serialization.pickled import PickleSerializer, SignedPickleSerializer
from perdure.serialization.tagged_json import JsonSerializer, UnserializableError

__all__ = [
    "JsonSerializer",
    "PayloadCodec",
    "Payloads",
    "PickleSerializer",
    "Serializer",
    "SignedPickleSerializer",
    "TextSerializer",
    "UnserializableError",
    "WorkflowSerializationFormat",
    "check_serialization_type",
]
