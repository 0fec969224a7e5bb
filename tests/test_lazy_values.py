"""A record's values stay JSON text until the request reads them: reading two keys of a
large session decodes two values, every read gets values of its own, and the checks a
decoded value gets (JSON, nesting, no lone surrogate) are the same whenever it is read.
A record read again is parsed once (RecordReader's memo of recent short records), and so
is a short immutable value (decode_value's)."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest
from cryptography.fernet import Fernet

from session_middleware import session as session_module
from session_middleware._protocol import records
from session_middleware._protocol.records import (
    MAX_NESTING,
    CorruptRecord,
    FieldCodec,
    Record,
    RecordReader,
    to_json,
)
from session_middleware.session import Session

CIPHER = Fernet(Fernet.generate_key())


def _flat(cipher: records.Cipher | None = None, **data: object) -> list[bytes]:
    """A record's hash as the read script returns it: flat field/value pairs of bytes."""
    now = time.time()
    record = Record(
        stored={key: to_json(value) for key, value in data.items()},
        created=now,
        expires=now + 60,
        refreshed=now,
        user_id="alice",
        epoch="e" * 22,
        extra={"ua": "a browser", "ip": "192.0.2.1"},
    )
    return [item.encode() for item in FieldCodec(cipher).fields(record)]


def _session(record: Record) -> Session:
    return Session(None, record.user_id, stored=record.stored)


def _texts_given(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[str]:
    """The texts given to `module.name`, in order, from now on."""
    seen: list[str] = []
    real = getattr(module, name)

    def counting(text: str) -> Any:
        seen.append(text)
        return real(text)

    monkeypatch.setattr(module, name, counting)
    return seen


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts the session decodes, in order."""
    return _texts_given(monkeypatch, session_module, "decode_value")


@pytest.mark.parametrize("cipher", [None, CIPHER], ids=["plain", "encrypted"])
def test_only_the_values_read_are_decoded(decoded: list[str], cipher: Any) -> None:
    cart = [{"id": n, "price": 9.5} for n in range(2000)]
    record = RecordReader(cipher).read(_flat(cipher, theme="dark", cart=cart, n=3))
    assert record.stored["cart"] == to_json(cart), "opened (decrypted) at read, not decoded"
    session = _session(record)
    assert session["theme"] == "dark" and session.get("n") == 3
    assert "cart" in session and len(session) == 3 and sorted(session) == ["cart", "n", "theme"]
    assert decoded == ['"dark"', "3"]
    assert session["theme"] == "dark"
    assert len(decoded) == 2, "a value is decoded once per request"
    assert session["cart"] == cart and len(decoded) == 3


@pytest.mark.parametrize(
    "read_all",
    [
        pytest.param(dict, id="dict"),
        pytest.param(lambda s: {**s}, id="unpacking"),
        pytest.param(lambda s: json.loads(json.dumps(s)), id="json.dumps"),
        pytest.param(lambda s: dict(s.items()), id="items"),
        pytest.param(lambda s: dict(zip(s.keys(), s.values(), strict=True)), id="values"),
        pytest.param(lambda s: s.copy(), id="copy"),
        pytest.param(lambda s: s | {}, id="or"),
        pytest.param(lambda s: dict(s.data), id="data"),
        pytest.param(lambda s: {k: s[k] for k in s}, id="iteration"),
        pytest.param(lambda s: dict(sorted(s.snapshot().items())), id="snapshot"),
    ],
)
def test_every_way_of_reading_the_whole_session_sees_decoded_values(read_all: Any) -> None:
    data = {"theme": "dark", "cart": [{"sku": 1}], "n": None}
    session = _session(RecordReader(None).read(_flat(**data)))
    assert read_all(session) == data
    assert session == data


def test_each_read_owns_its_values() -> None:
    flat = _flat(cart=[{"sku": 1}], theme="dark")
    reader = RecordReader(None)
    first = _session(reader.read(flat))
    first["cart"][0]["sku"] = 2
    first["theme"] = "light"
    second = _session(reader.read(flat))
    assert dict(second) == {"cart": [{"sku": 1}], "theme": "dark"}
    assert second.changes(reader.read(flat).stored) == ([], [])
    assert sorted(first.changes(reader.read(flat).stored)[0]) == [
        ("cart", '[{"sku":2}]'),
        ("theme", '"light"'),
    ]


def test_values_never_read_are_not_compared_nor_rewritten() -> None:
    record = RecordReader(None).read(_flat(cart=[1, 2], theme="dark"))
    session = _session(record)
    session.mark_modified()  # compare every key read: none was
    assert session.changes(record.stored) == ([], [])
    del session["theme"]
    session["n"] = 1
    assert session.changes(record.stored) == ([("n", "1")], ["theme"])
    assert session.texts() == {"cart": "[1,2]", "n": "1"}


def test_pop_setdefault_and_popitem_decode_first() -> None:
    session = _session(RecordReader(None).read(_flat(a=[1], b={"c": 2}, d="x")))
    assert session.pop("a") == [1]
    assert session.setdefault("b", 0) == {"c": 2}
    assert session.popitem() == ("d", "x")
    assert dict(session) == {"b": {"c": 2}}


def test_a_later_releases_field_is_kept_on_every_read() -> None:
    reader = RecordReader(None)
    flat = [b"c", b"0", b"x", b"1", b"r", b"0", b"z", b'{"later":1}', b"d:a", b"1"]
    first, second = reader.read(flat), reader.read(flat)
    assert first.unknown == second.unknown == {"z": '{"later":1}'}
    assert second.value("a") == 1


@pytest.mark.parametrize(
    "flat",
    [
        pytest.param([b"c", b"1e999", b"x", b"0", b"r", b"0"], id="timestamp-out-of-range"),
        pytest.param([b"c", b"0", b"x", b"1", b"r", b"0", b"o", b"\xff"], id="field-not-utf8"),
        pytest.param([b"c", b"0", b"x", b"1", b"r", b"0", b"d:a", b"\xff"], id="value-not-utf8"),
        pytest.param([b"c", b"0", b"x", b"1", b"r", b"0", b"u", b'"a"'], id="user-no-epoch"),
        pytest.param([b"c", b"0", b"x", b"1"], id="missing-refreshed"),
    ],
)
def test_corrupt_metadata_refuses_the_record(flat: list[bytes]) -> None:
    with pytest.raises(CorruptRecord):
        RecordReader(None).read(flat)


def test_a_value_that_does_not_open_refuses_the_record() -> None:
    flat = _flat(CIPHER, card="4111")
    flat[-1] = Fernet(Fernet.generate_key()).encrypt(b'd:card\x00"4111"')
    with pytest.raises(CorruptRecord, match="cannot decrypt"):
        RecordReader(CIPHER).read(flat)


def test_a_record_over_max_bytes_is_refused() -> None:
    small, large = _flat(text="x" * 10), _flat(text="x" * 500)
    reader = RecordReader(None, max_bytes=sum(map(len, small)) + 100)
    assert reader.read(small).value("text") == "x" * 10
    with pytest.raises(CorruptRecord, match="max_session_bytes"):
        reader.read(large)


def test_nesting_is_checked_when_a_value_is_read() -> None:
    too_deep = b"[" * (MAX_NESTING + 1) + b"]" * (MAX_NESTING + 1)
    flat = [*_flat(ok=1), b"d:deep", too_deep]
    record = RecordReader(None).read(flat)
    with pytest.raises(CorruptRecord, match="nested too deeply"):
        record.value("deep")
    # Many brackets but shallow: served.
    wide = RecordReader(None).read(_flat(items=[[]] * MAX_NESTING))
    assert wide.value("items") == [[]] * MAX_NESTING


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The records RecordReader decodes (rather than finds in its memo)."""
    seen: list[tuple[Any, ...]] = []
    real = records.decode

    def counting(flat: Any, codec: FieldCodec, *options: Any) -> records.Record:
        seen.append(tuple(flat))
        return real(flat, codec, *options)

    monkeypatch.setattr(records, "decode", counting)
    return seen


@pytest.mark.parametrize("cipher", [None, CIPHER], ids=["plain", "encrypted"])
def test_a_record_read_again_is_parsed_once_and_each_read_owns_its_values(
    decodes: list[tuple[Any, ...]], cipher: Any
) -> None:
    reader = RecordReader(cipher)
    flat = _flat(cipher, cart=[{"sku": 1}], theme="dark")
    first, second = reader.read(flat), reader.read(list(flat))
    assert decodes == [tuple(flat)] and first == second
    assert second.user_id == "alice" and second.extra["ip"] == "192.0.2.1"
    mine = _session(first)
    mine["cart"][0]["sku"] = 2
    assert _session(second)["cart"] == [{"sku": 1}]
    with pytest.raises(TypeError):
        first.extra["ip"] = "203.0.113.9"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):  # shared by both reads: read-only
        first.epoch = "another"  # type: ignore[misc]


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


def test_a_corrupt_record_is_refused_every_time(decodes: list[tuple[Any, ...]]) -> None:
    reader = RecordReader(None)
    flat = [b"c", b"1e999", b"x", b"0", b"r", b"0"]
    for _ in range(3):
        with pytest.raises(CorruptRecord):
            reader.read(flat)
    assert len(decodes) == 3


def test_a_large_records_values_are_made_text_only_when_read() -> None:
    """Over LAZY_FROM bytes, a value is UTF-8 decoded when it is read: one that is not
    UTF-8 refuses that value, not the record, and the others read."""
    flat = _flat(None, theme="dark", big="x" * records.LAZY_FROM)
    flat += [b"d:broken", b"\xff" + b"x" * 10]
    record = RecordReader(None).read(flat)
    assert record.user_id == "alice" and record.value("theme") == "dark"
    assert sorted(record.stored) == ["big", "broken", "theme"]
    with pytest.raises(CorruptRecord, match="not UTF-8"):
        record.value("broken")
    session = _session(record)
    assert session["theme"] == "dark" and session["broken"] is None
    session["more"] = 1
    changed, removed = session.changes(record.stored)
    assert sorted(changed) == [("broken", "null"), ("more", "1")] and removed == []
    assert session.texts()["big"] == to_json("x" * records.LAZY_FROM)


def test_an_encrypted_large_record_with_a_value_altered_is_dropped_whole() -> None:
    """With a cipher every value is authenticated when the record is read, whatever its
    size: a value altered in Redis drops the record (docs/security.md)."""
    flat = _flat(CIPHER, theme="dark", big="x" * records.LAZY_FROM)
    assert RecordReader(CIPHER).read(flat).value("theme") == "dark"
    for altered in (b"\xff" + b"x" * 10, CIPHER.encrypt(b'"other"')[:-4] + b"AAA="):
        with pytest.raises(CorruptRecord):
            RecordReader(CIPHER).read([*flat, b"d:broken", altered])


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts decode_value parses (rather than finds among the values it remembers)."""
    monkeypatch.setattr(records, "_SCALARS", {})
    return _texts_given(monkeypatch, records, "_json")


def test_a_short_immutable_value_is_parsed_once(parsed: list[str]) -> None:
    texts = ['"dark"', "42", "1", "true", "null", "2.5", '"\\u00e9t\\u00e9"']
    for _ in range(3):
        values = [records.decode_value(text) for text in texts]
        assert values == ["dark", 42, 1, True, None, 2.5, "été"]
        assert [type(value) for value in values] == [str, int, int, bool, type(None), float, str]
    assert parsed == texts


def test_a_list_a_dict_or_a_long_text_is_parsed_every_time(parsed: list[str]) -> None:
    long = to_json("x" * (records.SCALAR_TEXT_LENGTH + 1))
    for text in ("[1,2]", '{"a":[]}', long):
        first, second = records.decode_value(text), records.decode_value(text)
        assert first == second == json.loads(text)
        if not isinstance(first, str):
            assert first is not second  # each read owns what it may change in place
    assert parsed == ["[1,2]", "[1,2]", '{"a":[]}', '{"a":[]}', long, long]


def test_a_value_that_does_not_read_is_refused_every_time(parsed: list[str]) -> None:
    for _ in range(2):
        with pytest.raises(CorruptRecord):
            records.decode_value("NaN")
    assert parsed == ["NaN", "NaN"]
    assert records._SCALARS == {}


def test_the_values_remembered_are_bounded(
    parsed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "SCALARS_REMEMBERED", 3)
    for number in range(10):
        assert records.decode_value(str(number)) == number
        assert len(records._SCALARS) <= 3
    assert records.decode_value("9") == 9
    assert len(parsed) == 10
