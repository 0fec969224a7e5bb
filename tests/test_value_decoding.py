"""Session values decode to what the JSON decoder gives, or are refused as it refuses them,
whichever path (plain strings and ints skip the decoder) decodes them."""

from __future__ import annotations

import json

import pytest

from session_middleware._protocol.records import (
    MAX_NESTING,
    FieldCodec,
    _json,
    check_json_value,
    decode,
    to_json,
)
from session_middleware.errors import CorruptRecord

TIMES = ["c", "1795000000.000000", "x", "1796000000.000000", "r", "1795000000.000000"]
VALUES = [
    '"dark"',
    '""',
    '"é and 日本"',
    '"a\\"b"',
    '"tab\\there"',
    '"\\u00e9"',
    '" padded "',
    ' "space before"',
    '"a" ',
    "0",
    "7",
    "123456789012345678",
    "1234567890123456789012345",
    "-5",
    "1.5",
    "[1]",
    '{"a": "b"}',
    "true",
    "null",
]
REFUSED = [
    '"raw\ttab"',  # a control character JSON forbids inside a string
    '"raw\nnewline"',
    '"\x00"',
    '"a"b"',
    '"unterminated',
    '"',
    "01",
    "007",
    "٣",  # a digit, but not an ASCII one
    "1" * 5000,  # more digits than Python converts
    "NaN",
    "",
]


@pytest.mark.parametrize("text", VALUES)
def test_a_value_decodes_as_json_does(text: str) -> None:
    value = _json(text)
    assert value == json.loads(text)
    assert type(value) is type(json.loads(text))


@pytest.mark.parametrize("text", REFUSED)
def test_a_value_json_refuses_is_corrupt(text: str) -> None:
    with pytest.raises(CorruptRecord):
        _json(text)


def nested(levels: int) -> object:
    value: object = 1
    for level in range(levels):
        value = [value] if level % 2 else {"a": value}
    return value


@pytest.mark.parametrize("levels", [MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1])
def test_a_stored_value_nests_as_deep_as_a_write_allows(levels: int) -> None:
    value = nested(levels)
    flat = [*TIMES, "d:cart", to_json([1, 2]), "d:deep", to_json({"list": [value] * 70})]
    try:
        check_json_value("deep", {"list": [value]})
        writable = True
    except TypeError:
        writable = False
    record = decode(flat, FieldCodec(None))
    if writable:
        assert record.value("deep")["list"][0] == value
    else:
        with pytest.raises(CorruptRecord):
            record.value("deep")
    assert record.value("cart") == [1, 2]
