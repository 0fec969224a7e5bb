"""RecordReader: a record read again is decoded once, and every read still gets a record
of its own that the request may change without touching any other read."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest
from cryptography.fernet import Fernet

from session_middleware._protocol import records
from session_middleware._protocol.records import (
    MAX_NESTING,
    CorruptRecord,
    FieldCodec,
    Record,
    RecordReader,
)

CIPHER = Fernet(Fernet.generate_key())


def _flat(cipher: records.Cipher | None = None, **data: object) -> list[bytes]:
    """A record's hash as the read script returns it: flat field/value pairs of bytes."""
    now = time.time()
    record = Record(
        data=dict(data),
        created=now,
        expires=now + 60,
        refreshed=now,
        user_id="alice",
        epoch="e" * 22,
        extra={"ua": "a browser", "ip": "192.0.2.1"},
    )
    return [item.encode() for item in FieldCodec(cipher).fields(record)]


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = []
    real = records.decode

    def counting(
        flat: Sequence[Any], codec: FieldCodec, max_bytes: int | None = None
    ) -> tuple[Record, bool]:
        seen.append(tuple(flat))
        return real(flat, codec, max_bytes)

    monkeypatch.setattr(records, "decode", counting)
    return seen


@pytest.mark.parametrize("cipher", [None, CIPHER], ids=["plain", "encrypted"])
def test_a_record_read_again_is_decoded_once(
    decodes: list[tuple[Any, ...]], cipher: records.Cipher | None
) -> None:
    reader = RecordReader(cipher)
    flat = _flat(cipher, theme="dark")
    first = reader.read(flat)
    second = reader.read(list(flat))
    assert decodes == [tuple(flat)]
    assert first == second and first is not second
    assert second.data == {"theme": "dark"} and second.user_id == "alice"
    assert second.stored == {"theme": '"dark"'}


def test_each_read_owns_its_record(decodes: list[tuple[Any, ...]]) -> None:
    reader = RecordReader(None)
    flat = _flat(cart=[{"sku": 1}], theme="dark")
    first = reader.read(flat)
    first.data["cart"][0]["sku"] = 2
    first.data["theme"] = "light"
    first.extra["ip"] = "203.0.113.9"
    first.epoch, first.refreshed = "f" * 22, 0.0
    second = reader.read(flat)
    third = reader.read(flat)
    assert second.data == {"cart": [{"sku": 1}], "theme": "dark"}
    assert second.extra["ip"] == "192.0.2.1"
    assert second.epoch == "e" * 22 and second.refreshed > 0
    assert second.stored == {"cart": '[{"sku":1}]', "theme": '"dark"'}
    second.data["cart"].append({"sku": 3})
    assert third.data["cart"] == [{"sku": 1}]
    assert len(decodes) == 1


def test_a_later_releases_field_is_kept_on_every_read(decodes: list[tuple[Any, ...]]) -> None:
    reader = RecordReader(None)
    flat = [b"c", b"0", b"x", b"1", b"r", b"0", b"z", b'{"later":1}', b"d:a", b"1"]
    first, second = reader.read(flat), reader.read(flat)
    assert first.unknown == second.unknown == {"z": '{"later":1}'}
    assert second.data == {"a": 1} and len(decodes) == 1


@pytest.mark.parametrize(
    "flat",
    [
        pytest.param([b"c", b"1e999", b"x", b"0", b"r", b"0"], id="timestamp-out-of-range"),
        pytest.param([b"c", b"0", b"x", b"1", b"r", b"0", b"d:n", b"NaN"], id="nan"),
        pytest.param([b"c", b"0", b"x", b"1", b"r", b"0", b"o", b"\xff"], id="field-not-utf8"),
        pytest.param([b"c", b"0", b"x", b"1", b"r", b"0", b"u", b'"a"'], id="user-no-epoch"),
        pytest.param([b"c", b"0", b"x", b"1"], id="missing-refreshed"),
    ],
)
def test_a_corrupt_record_is_refused_every_time(
    decodes: list[tuple[Any, ...]], flat: list[bytes]
) -> None:
    reader = RecordReader(None)
    for _ in range(3):
        with pytest.raises(CorruptRecord):
            reader.read(flat)
    assert len(decodes) == 3


def test_a_record_over_max_bytes_is_refused_every_time(decodes: list[tuple[Any, ...]]) -> None:
    small, large = _flat(text="x" * 10), _flat(text="x" * 500)
    limit = sum(map(len, small)) + 100
    reader = RecordReader(None, max_bytes=limit)
    assert reader.read(small).data == {"text": "x" * 10}
    for _ in range(2):
        with pytest.raises(CorruptRecord, match="max_session_bytes"):
            reader.read(large)
    assert len(decodes) == 3


def test_nesting_is_checked_and_deep_records_are_not_remembered(
    decodes: list[tuple[Any, ...]],
) -> None:
    reader = RecordReader(None)
    too_deep = _flat(ok=1)
    too_deep[-1:] = []  # replace the last value with a too deeply nested one
    too_deep.append(b"[" * (MAX_NESTING + 1) + b"]" * (MAX_NESTING + 1))
    for _ in range(2):
        with pytest.raises(CorruptRecord, match="nested too deeply"):
            reader.read(too_deep)
    # Many brackets but shallow: served, decoded (and checked) on every read.
    wide = _flat(items=[[]] * MAX_NESTING)
    assert reader.read(wide).data == {"items": [[]] * MAX_NESTING}
    assert reader.read(wide).data == {"items": [[]] * MAX_NESTING}
    assert len(decodes) == 4


def test_it_remembers_a_bounded_number_of_short_records(decodes: list[tuple[Any, ...]]) -> None:
    reader = RecordReader(None, max_entries=2, max_length=250)
    one, two, three = _flat(n=1), _flat(n=2), _flat(n=3)
    long = _flat(text="x" * 300)
    assert all(sum(map(len, flat)) <= 250 for flat in (one, two, three))
    for flat in (one, two, three, long, long, one):
        reader.read(flat)
    # `one` was the least recently read when `three` came: read again, it is decoded again.
    assert decodes == [tuple(flat) for flat in (one, two, three, long, long, one)]
    reader.read(three)
    assert len(decodes) == 6
