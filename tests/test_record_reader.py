"""RecordReader: a record read again is decoded once, and every read still gets a record
of its own that the request may change without touching any other read."""

from __future__ import annotations

import time

import pytest

from session_middleware import records
from session_middleware.records import CorruptRecord, Record, RecordReader, encode


def _raw(**data: object) -> str:
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
    return encode(record)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = records.decode

    def counting(raw: bytes | str, cipher: records.Cipher | None = None) -> Record:
        seen.append(str(raw))
        return real(raw, cipher)

    monkeypatch.setattr(records, "decode", counting)
    return seen


def test_a_record_read_again_is_decoded_once(decodes: list[str]) -> None:
    reader = RecordReader(None)
    raw = _raw(theme="dark")
    first, first_loaded = reader.read(raw)
    second, second_loaded = reader.read(raw)
    assert decodes == [raw]
    assert first == second and first_loaded == second_loaded
    assert second.data == {"theme": "dark"} and second.user_id == "alice"


def test_each_read_owns_its_record(decodes: list[str]) -> None:
    reader = RecordReader(None)
    raw = _raw(cart=[{"sku": 1}], theme="dark")
    first, _ = reader.read(raw)
    first.data["cart"][0]["sku"] = 2
    first.data["theme"] = "light"
    first.extra["ip"] = "203.0.113.9"
    first.epoch, first.refreshed = "f" * 22, 0.0
    second, loaded = reader.read(raw)
    third, _ = reader.read(raw)
    assert second.data == {"cart": [{"sku": 1}], "theme": "dark"}
    assert second.extra["ip"] == "192.0.2.1"
    assert second.epoch == "e" * 22 and second.refreshed > 0
    second.data["cart"].append({"sku": 3})
    assert third.data["cart"] == [{"sku": 1}]
    assert loaded == records.marshal.dumps({"cart": [{"sku": 1}], "theme": "dark"}, 2)
    assert len(decodes) == 1


def test_a_corrupt_record_is_refused_every_time(decodes: list[str]) -> None:
    reader = RecordReader(None)
    for _ in range(3):
        with pytest.raises(CorruptRecord):
            reader.read('{"v":1,"d":{},"c":1e999,"x":0,"r":0}')
    assert len(decodes) == 3


def test_it_remembers_a_bounded_number_of_short_records(decodes: list[str]) -> None:
    reader = RecordReader(None, max_entries=2, max_length=200)
    one, two, three = _raw(n=1), _raw(n=2), _raw(n=3)
    long = _raw(text="x" * 300)
    for raw in (one, two, three, long, long, one):
        reader.read(raw)
    # `one` was the least recently read when `three` came: read again, it is decoded again.
    assert decodes == [one, two, three, long, long, one]
    reader.read(three)
    assert len(decodes) == 6
