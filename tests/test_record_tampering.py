"""A record in Redis that we could not have written is never served: arbitrary, mutated,
moved, oversized or deeply nested hashes and keys of the wrong type are refused, deleted and
logged (without secrets), and listings survive them. Property-based cases are derandomized
and bounded."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from hypothesis import example, given
from hypothesis import strategies as st

from session_middleware import SessionConfig, sessions
from session_middleware._protocol.key_layout import MAX_USER_ID, valid_user_id
from session_middleware._protocol.records import (
    LAYOUT_FIELDS,
    LAZY_FROM,
    MAX_TIMESTAMP,
    Cipher,
    CorruptRecord,
    FieldCodec,
    ReceivedTexts,
    Record,
    _known_layout,
    check_json_value,
    decode,
    decode_value,
    fields_size,
    flat_fields,
    to_json,
    valid_epoch,
)

from .support import REDIS_URL, SECRET
from .support.apps import wsgi_app
from .support.http import cookie_of, logged_in_cookie, read_with, wsgi_call
from .support.stored import (
    Planted,
    record_key,
    redis_edit,
    redis_exists,
    redis_get,
    redis_hash,
    redis_plant,
    session_keys,
)
from .support.tampering import (
    DROPPED,
    FERNET_KEY,
    Issued,
    cipher_for,
    delete_chars,
    dropped_lines,
    duplicate_part,
    flip_char,
    fuzz,
    insert_noise,
    issued,
    opened,
    truncate,
)

__all__ = ["issued"]  # the fixture

pytestmark = pytest.mark.anyio

Edit = tuple[bool, dict[str, str], tuple[str, ...]]


def anonymous_edit(changes: dict[str, str], removed: tuple[str, ...] = ()) -> Edit:
    return (False, changes, removed)


def logged_in_edit(changes: dict[str, str], removed: tuple[str, ...] = ()) -> Edit:
    return (True, changes, removed)


def planted_alice(config: Any, extra: dict[str, str]) -> tuple[Any, str, str]:
    app = config(wsgi_app)
    cookie = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    key = record_key(config, cookie)
    redis_edit(key, extra)
    return app, cookie, key


def assert_dropped(
    app: Any, cookie: str, key: str, caplog: pytest.LogCaptureFixture, secret: str
) -> None:
    """The planted record is refused (a fresh session), deleted, and logged once, by a
    fingerprint of its key, without its contents or the cookie."""
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="session_middleware")
    status, _, body = wsgi_call(app, "/read", f"session={cookie}")
    assert status == "200 OK"
    assert (body["user"], body["rejected"], body["data"]) == (None, None, {})
    assert not redis_exists(key)
    lines = [r.getMessage() for r in caplog.records if DROPPED in r.getMessage()]
    assert len(lines) == 1 and re.search(r": key [0-9a-f]{12}$", lines[0]), lines
    logged = " ".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)
    assert secret not in logged and cookie.split(".")[1] not in logged


finite = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)


json_leaf = st.none() | st.booleans() | finite | st.text(max_size=12)


json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


OUT_OF_RANGE = ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 400, "1e300")


SAFE_VALUES = ("null", "true", "0", "-1", "1.5", '""', '"x"', "[]", "{}", '{"v":1}', "[[[[]]]]")


garbled = st.text(max_size=12) | st.sampled_from(
    ("", " ", "{", '"', "[" * 70, "\x00", "é", "\\u00e9", '"\\u00e9"', "gAAAAA", "1_0")
)


json_text = json_value.map(json.dumps)


timestamp_text = (
    finite.map(repr) | finite.map(str) | st.sampled_from(OUT_OF_RANGE) | json_text | garbled
)


epoch_like = st.sampled_from(["", "0" * 32, "a b", "é", "x" * 65, "-_"]) | st.text(max_size=8)


meta_fields = {
    "c": timestamp_text,
    "x": timestamp_text,
    "r": timestamp_text,
    "u": st.text(max_size=8).map(json.dumps) | st.integers().map(str) | json_text | garbled,
    "e": epoch_like | json_text,
    "m": st.dictionaries(st.text(max_size=3), json_value, max_size=2).map(json.dumps)
    | json_text
    | garbled,
}


data_fields = st.dictionaries(
    st.text(max_size=6).map(lambda key: "d:" + key), json_text | garbled, max_size=3
)


unknown_fields = st.dictionaries(
    st.text(max_size=3).filter(lambda name: name not in meta_fields and not name.startswith("d:")),
    garbled,
    max_size=1,
)


record_shaped = st.builds(
    lambda meta, data, unknown, odd: {**meta, **data, **(unknown if odd else {})},
    st.fixed_dictionaries({}, optional=meta_fields),
    data_fields,
    unknown_fields,
    st.integers(0, 3).map(lambda n: n == 0),
)


def flat(fields: Mapping[str, str] | Sequence[tuple[str, str]]) -> list[bytes]:
    """A hash as HGETALL returns it from a script: flat field/value pairs of bytes (lone
    surrogates become the invalid UTF-8 a byte string may hold)."""
    pairs = fields.items() if isinstance(fields, Mapping) else fields
    return [item.encode("utf-8", "surrogatepass") for pair in pairs for item in pair]


def sealed(fields: Mapping[str, str], cipher: Cipher | None) -> dict[str, str]:
    """The hash with its user id, device info and values encrypted, as a cipher stores them."""
    codec = FieldCodec(cipher)
    return {
        name: codec.seal(value, name) if name in ("u", "m") or name.startswith("d:") else value
        for name, value in fields.items()
    }


def check_decode(
    fields: Sequence[Any], cipher: Cipher | None, max_bytes: int | None = None
) -> Record | None:
    """decode() either refuses with CorruptRecord or gives a record this package could have
    written, safe to serve, each value of which decode_value() either refuses (the session
    drops it when read) or gives as a write would accept it: any other exception fails the
    test."""
    try:
        record = decode(fields, FieldCodec(cipher), max_bytes)
    except CorruptRecord:
        return None
    assert isinstance(record.stored, (dict, ReceivedTexts))
    assert isinstance(record.extra, Mapping)
    assert all(type(value) is str for value in record.unknown.values())
    for stamp in (record.created, record.expires, record.refreshed):
        assert 0 <= stamp <= MAX_TIMESTAMP, "a timestamp datetime and PXAT can take"
    assert record.epoch is None or valid_epoch(record.epoch)
    if record.user_id is not None:
        assert valid_user_id(record.user_id)
        assert valid_epoch(record.epoch), "logged in without a valid epoch"
    for key, value in decoded_values(record).items():
        check_json_value(key, value)  # finite numbers, nesting within MAX_NESTING
        to_json(value).encode()  # no lone surrogate
    # Written back, it encodes (no lone surrogates) within the limit it was read under.
    size = fields_size(FieldCodec(None).fields(record))
    if max_bytes is not None:
        assert size <= max_bytes, "a record a write would refuse as too large"
    return record


def decoded_values(record: Record) -> dict[str, Any]:
    """The record's values that decode, as the session reads them."""
    values = {}
    for key, text in record.stored.items():
        with contextlib.suppress(CorruptRecord):
            values[key] = decode_value(text)
    return values


def _set_value(draw: st.DrawFn, fields: dict[str, str], values: Sequence[str]) -> None:
    fields[draw(st.sampled_from(sorted(fields)))] = draw(st.sampled_from(values))


def _mangle_value(draw: st.DrawFn, fields: dict[str, str], values: Sequence[str]) -> None:
    name = draw(st.sampled_from(sorted(fields)))
    mutate = draw(
        st.sampled_from((flip_char, insert_noise, delete_chars, truncate, duplicate_part))
    )
    fields[name] = mutate(draw, fields[name])


def _drop_field(draw: st.DrawFn, fields: dict[str, str], values: Sequence[str]) -> None:
    del fields[draw(st.sampled_from(sorted(fields)))]


def _rename_field(draw: st.DrawFn, fields: dict[str, str], values: Sequence[str]) -> None:
    name = draw(st.sampled_from(sorted(fields)))
    new = draw(st.sampled_from(["c", "x", "r", "u", "e", "m", "d:", "d:u", "d:e", "o", "D:k"]))
    fields[new] = fields.pop(name)


def _swap_values(draw: st.DrawFn, fields: dict[str, str], values: Sequence[str]) -> None:
    one, two = draw(st.sampled_from(sorted(fields))), draw(st.sampled_from(sorted(fields)))
    fields[one], fields[two] = fields[two], fields[one]


def _add_field(draw: st.DrawFn, fields: dict[str, str], values: Sequence[str]) -> None:
    name = draw(st.sampled_from(["d:new", "d:", "o", "v", "enc", "d:" + "k" * 300]))
    fields[name] = draw(st.sampled_from(values))


HASH_MUTATIONS = (_set_value, _mangle_value, _drop_field, _rename_field, _swap_values, _add_field)


@st.composite
def mutated_record(
    draw: st.DrawFn, originals: Sequence[dict[str, str]], values: Sequence[str]
) -> dict[str, str]:
    """A real record's hash, perhaps mixed with another's, mutated one to three times."""
    fields = dict(draw(st.sampled_from(originals)))
    if len(originals) > 1 and draw(st.booleans()):
        other = draw(st.sampled_from(originals))
        name = draw(st.sampled_from(sorted(other)))
        fields[name] = other[name]
    for _ in range(draw(st.integers(1, 3))):
        if fields:
            draw(st.sampled_from(HASH_MUTATIONS))(draw, fields, values)
    return fields


@pytest.fixture
def real_records(issued: Issued) -> dict[bool, list[tuple[dict[str, str], Record]]]:
    """Records as Redis holds them, plain and encrypted, with what they decode to."""
    plain = [issued.record_fields(c) for c in issued.cookies]
    encrypted_config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=issued.prefix + "enc:",
        encryption_key=FERNET_KEY,
    )
    app = encrypted_config(wsgi_app)
    _, headers, _ = wsgi_call(app, "/login?user=bob")
    bob = cookie_of(headers)
    wsgi_call(app, "/set?key=card&value=4111", f"session={bob}")
    wsgi_call(app, "/set?key=role&value=user", f"session={bob}")
    _, headers, _ = wsgi_call(app, "/set?key=cart&value=3")
    encrypted = [redis_hash(record_key(encrypted_config, c)) for c in (bob, cookie_of(headers))]
    encrypted_config.redis.close()
    assert all("d:card" not in fields or "4111" not in fields["d:card"] for fields in encrypted)
    return {
        flag: [(fields, decode(flat(fields), FieldCodec(cipher_for(flag)))) for fields in raws]
        for flag, raws in ((False, plain), (True, encrypted))
    }


@pytest.fixture
def plain_records(issued: Issued) -> list[dict[str, str]]:
    return [issued.record_fields(c) for c in issued.cookies]


def serve_planted(
    issued: Issued, caplog: pytest.LogCaptureFixture, cookie: str, fields: Mapping[str, str]
) -> Record | None:
    """Plant `fields` (and a secret value) as the record at `cookie`'s key, then request
    through the WSGI middleware: a 200, and either the session decode() accepts or a fresh
    one, the planted record deleted and logged without its contents or the cookie."""
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="session_middleware")
    marker = f"planted-{uuid.uuid4().hex}"
    fields = {**fields, "d:secret": json.dumps(marker)}
    key = record_key(issued.config, cookie)
    redis_plant(key, dict(zip(*[iter(flat(fields))] * 2, strict=True)))
    try:
        expected: Record | None = decode(
            flat(fields), FieldCodec(None), issued.config.core.max_bytes
        )
    except CorruptRecord:
        expected = None
    status, _, body = wsgi_call(issued.config(wsgi_app), "/set?key=k&value=v", f"session={cookie}")
    assert status == "200 OK"
    if expected is not None:
        check_decode(flat(fields), None, issued.config.core.max_bytes)
    assert body["user"] in (None, "alice")
    lines = dropped_lines(caplog)
    if expected is None:
        assert body["user"] is None and body["data"] == {"k": "v"}
        assert not redis_exists(key), "a record we could not have written is deleted"
        assert len(lines) == 1 and re.search(r": key [0-9a-f]{12}$", lines[0])
    for text in lines:
        assert marker not in text and cookie.split(".")[1] not in text
    return expected


@fuzz(300)
@given(
    fields=st.lists(st.binary(max_size=40) | st.text(max_size=40), max_size=12),
    encrypted=st.booleans(),
)
@example(fields=[b"d:k", b"[" * 100_000], encrypted=False)
@example(fields=[b"d:k", b'{"v":1,"d":' * 50_000], encrypted=False)
@example(fields=[b"\x80\x04\x95pickle"], encrypted=False)
@example(fields=["\ud800", "x"], encrypted=False)
@example(fields=[b"d:\xff", b"1"], encrypted=False)
@example(fields=[b"u", b"\xff"], encrypted=True)
@example(fields=["d:k", "é"], encrypted=True)
@example(
    fields=[b"c", b"0", b"x", b"0", b"r", b"0", b"u", b'"a"', b"e", b"9" * 5000], encrypted=False
)
@example(fields=[b"c", b"0", b"x", b"0", b"r"], encrypted=False)
@example(fields=[1, 2, None, [b"c"]], encrypted=False)  # type: ignore[list-item]
def test_arbitrary_hashes_are_refused_as_corrupt_records(
    fields: list[bytes | str], encrypted: bool
) -> None:
    record = check_decode(fields, cipher_for(encrypted))
    if record is not None:
        names = {name.decode() if isinstance(name, bytes) else name for name in fields[::2]}
        assert {"c", "x", "r"} <= names, "only a hash carrying all three timestamps"


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"WRONGTYPE", id="not-a-hash"),
        pytest.param("WRONGTYPE", id="not-a-hash-text"),
        pytest.param(None, id="nil"),
        pytest.param(3, id="integer"),
    ],
)
def test_a_reply_that_is_not_a_hash_is_refused(reply: Any) -> None:
    with pytest.raises(CorruptRecord):
        flat_fields(reply)


@fuzz(400)
@given(fields=record_shaped, encrypted=st.booleans(), seal=st.booleans())
@example(
    fields={"c": "0", "x": "1", "r": "0", "d:s": "[" * 65 + "]" * 65}, encrypted=True, seal=True
)
@example(fields={"c": "0", "x": "1", "r": "0", "u": '"a"', "e": "a b"}, encrypted=False, seal=False)
@example(fields={"c": "0", "x": "1", "r": "0", "u": "true", "e": "e"}, encrypted=False, seal=False)
@example(fields={"c": "0", "x": "1", "r": "0", "m": "[]"}, encrypted=True, seal=True)
@example(fields={"c": "-0.5", "x": "1", "r": "0"}, encrypted=False, seal=False)
def test_record_shaped_hashes_are_refused_or_safe(
    fields: dict[str, str], encrypted: bool, seal: bool
) -> None:
    cipher = cipher_for(encrypted)
    check_decode(flat(sealed(fields, cipher) if seal else fields), cipher)


@fuzz(300)
@given(fields=record_shaped)
@example(fields={"c": "0", "x": "1", "r": "0", "u": '"a"', "e": "\udc80"})
@example(fields={"c": "\udcff", "x": "1", "r": "0"})
@example(fields={"c": "0", "x": "1", "r": "0", "\udcff": "1"})
@example(fields={"c": "0", "x": "1", "r": "0", "z": "\udcff"})
@example(fields={"c": "0", "x": "1", "r": "0", "z": "1"})
def test_large_record_shaped_hashes_are_refused_or_safe(fields: dict[str, str]) -> None:
    """Over LAZY_FROM bytes, where values are decoded as they are read, the same holds."""
    padding = {"d:padding": to_json("x" * LAZY_FROM)}
    record = check_decode(flat({**fields, **padding}), None)
    if record is not None:
        assert type(record.stored) is ReceivedTexts


def decoded_or_refused(fields: Sequence[bytes]) -> Record | None:
    try:
        return decode(fields, FieldCodec(None))
    except CorruptRecord:
        return None


@fuzz(200)
@given(fields=record_shaped, other=record_shaped, large=st.booleans())
@example(
    fields={"c": "0", "x": "1", "r": "0", "d:a": '"a"'},
    other={"c": "\udcff", "x": "2", "r": "1", "d:b": "2"},
    large=False,
)
@example(fields={"c": "0", "x": "1", "r": "0", "z": "1"}, other={"q": "\udcff"}, large=True)
def test_records_of_the_same_field_names_decode_each_to_its_own_values(
    fields: dict[str, str], other: dict[str, str], large: bool
) -> None:
    """Where each field is among a record's values is found once for its names (in their
    order) and shared with every record of those names: each decodes as if it came first,
    and the order of the fields changes nothing."""
    padding = [("d:padding", to_json("x" * LAZY_FROM))] if large else []
    names = list(fields)
    values = [*other.values(), *fields.values()][: len(names)]
    records = [
        flat([*fields.items(), *padding]),
        flat([*zip(names, values, strict=True), *padding]),
        flat([*reversed(fields.items()), *padding]),
    ]
    alone = []
    for each in records:
        _known_layout.cache_clear()
        alone.append(decoded_or_refused(each))
    _known_layout.cache_clear()
    assert [decoded_or_refused(each) for each in records] == alone
    assert alone[2] == alone[0], "the order of the fields changes nothing"


def test_layouts_are_remembered_only_for_records_of_few_short_names() -> None:
    """A large session's layout is remembered like a short one's; a record of more than
    LAYOUT_FIELDS fields, or of names longer than LAZY_FROM bytes all told, is decoded
    without it, so what planted records make a worker remember stays small."""
    times = [("c", "0"), ("x", "1"), ("r", "0")]
    large = [*times, ("d:a", to_json("x" * LAZY_FROM)), ("d:b", "1")]
    many = [*times, *((f"d:{n}", "1") for n in range(LAYOUT_FIELDS))]
    long_names = [*times, ("d:" + "k" * LAZY_FROM, "1")]
    _known_layout.cache_clear()
    for fields in (large, large):
        assert decode(flat(fields), FieldCodec(None)).value("b") == 1
    assert _known_layout.cache_info()[:2] == (1, 1), "found once, then remembered"
    for fields in (many, many, long_names, long_names):
        decode(flat(fields), FieldCodec(None))
    assert _known_layout.cache_info().currsize == 1, "neither remembered"


def test_a_field_named_twice_holds_its_last_value() -> None:
    fields = [("c", "0"), ("x", "1"), ("d:k", '"first"'), ("r", "0"), ("d:k", '"last"')]
    for _ in range(2):  # its layout found, then remembered
        record = decode(flat(fields), FieldCodec(None))
        assert record.value("k") == "last" and record.created == record.refreshed == 0.0


@fuzz(200)
@given(fields=record_shaped, limit=st.integers(0, 400))
def test_a_record_over_max_bytes_is_refused(fields: dict[str, str], limit: int) -> None:
    pairs = flat(fields)
    record = check_decode(pairs, None, limit)
    if record is not None:
        assert sum(len(item) for item in pairs) <= limit


@fuzz(300)
@given(data=st.data(), encrypted=st.booleans())
def test_mutated_real_records_are_refused_or_unchanged_in_substance(
    real_records: dict[bool, list[tuple[dict[str, str], Record]]],
    data: st.DataObject,
    encrypted: bool,
) -> None:
    originals = real_records[encrypted]
    fields = data.draw(mutated_record([f for f, _ in originals], SAFE_VALUES))
    record = check_decode(flat(fields), cipher_for(encrypted))
    if record is not None and encrypted:
        # The user id, the device info and every value are Fernet tokens: none can be
        # forged or altered. (That one can be moved to another field is pinned, failing,
        # by test_an_encrypted_value_cannot_be_moved_to_another_field.)
        sealed_texts = {text for fields, _ in originals for text in opened(fields)}
        assert record.user_id is None or to_json(record.user_id) in sealed_texts
        assert record.extra == {} or to_json(dict(record.extra)) in sealed_texts
        assert set(record.stored.values()) <= sealed_texts


@pytest.mark.parametrize(
    ("source", "target"),
    [("d:card", "d:role"), ("d:card", "d:is_admin"), ("d:card", "u"), ("m", "d:card")],
)
def test_an_encrypted_value_cannot_be_moved_to_another_field(
    real_records: dict[bool, list[tuple[dict[str, str], Record]]], source: str, target: str
) -> None:
    """docs/security.md: an encrypted record's data and user cannot be changed. Without the
    encryption key, a token moved to another field must not decrypt as that field's value."""
    fields = dict(real_records[True][0][0])
    fields[target] = fields.pop(source)
    assert check_decode(flat(fields), cipher_for(True)) is None


@fuzz(200)
@given(data=st.data())
@example(data=None)
def test_decoded_records_hold_only_values_we_could_have_written(
    real_records: dict[bool, list[tuple[dict[str, str], Record]]], data: st.DataObject | None
) -> None:
    plain = [fields for fields, _ in real_records[False]]
    if data is None:  # the smallest known counterexamples, kept so the failure is certain
        cases = [
            {**plain[0], "c": "1" * 400},
            {**plain[0], "d:s": '"\\ud800"'},
            {**plain[0], "d:s": "[" * 65 + "]" * 65},
            {**plain[0], "u": '"' + "u" * 300 + '"'},
        ]
    else:
        values = (*OUT_OF_RANGE, '""', '"' + "u" * 300 + '"', "[" * 65 + "]" * 65, '"\\ud800"')
        cases = [data.draw(mutated_record(plain, values))]
    for fields in cases:
        record = check_decode(flat(fields), None)
        if record is not None:
            json.dumps(decoded_values(record), allow_nan=False)


def test_a_user_id_padded_past_any_user_ids_json_is_refused() -> None:
    """A user id's JSON is at most 6 characters a character and its quotes: longer text
    (here spaces around a valid id) is refused, so the decoded ids remembered stay small."""
    base = {"c": "1", "x": "2", "r": "1", "e": "e" * 32}
    longest = to_json("\x00" * MAX_USER_ID)
    assert check_decode(flat({**base, "u": longest}), None) is not None
    assert check_decode(flat({**base, "u": ' "alice"'}), None) is not None
    padded = " " * (len(longest) - len('"alice"') + 1) + '"alice"'
    assert check_decode(flat({**base, "u": padded}), None) is None


def test_a_record_we_encode_decodes_to_itself() -> None:
    data = {"a": [1, 2.5, None], "b": {"c": "é"}, "": 2**60}
    record = Record(
        stored={key: to_json(value) for key, value in data.items()},
        created=1.0,
        expires=2.0,
        refreshed=1.5,
        user_id=7,
        epoch="e" * 32,
        extra={"ua": "a browser", "ip": None},
    )
    for cipher in (None, cipher_for(True)):
        pairs = FieldCodec(cipher).fields(record)
        back = decode(flat(list(zip(pairs[::2], pairs[1::2], strict=True))), FieldCodec(cipher))
        assert (decoded_values(back), back.user_id, back.epoch, back.extra) == (
            data,
            7,
            "e" * 32,
            record.extra,
        )
        assert (back.created, back.expires, back.refreshed) == (1.0, 2.0, 1.5)
        if cipher is not None:
            assert not any("é" in value or "browser" in value for value in pairs)


@fuzz(120)
@given(data=st.data())
def test_planted_hashes_are_served_only_as_written_else_deleted_and_logged(
    issued: Issued,
    plain_records: list[dict[str, str]],
    caplog: pytest.LogCaptureFixture,
    data: st.DataObject,
) -> None:
    cookie = data.draw(st.sampled_from(issued.cookies))
    values = (*SAFE_VALUES, *OUT_OF_RANGE)
    fields = data.draw(mutated_record(plain_records, values) | record_shaped)
    serve_planted(issued, caplog, cookie, fields)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param('"\\ud800"', id="lone-surrogate-escape"),
        pytest.param('"' + "é" * 40_000 + '"', id="under-the-limit-in-characters-not-bytes"),
        pytest.param("[" * 65 + "]" * 65, id="nested-65"),
        pytest.param("1e999", id="infinity"),
    ],
)
def test_planted_values_known_to_be_hard(
    issued: Issued,
    plain_records: list[dict[str, str]],
    caplog: pytest.LogCaptureFixture,
    value: str,
) -> None:
    serve_planted(issued, caplog, issued.alice, {**plain_records[0], "d:s": value})


@pytest.mark.parametrize(
    "planted",
    [
        pytest.param(b"a string", id="string"),
        pytest.param(b'{"v":1,"c":0,"x":9e9,"r":0,"d":{}}', id="old-json-layout"),
        pytest.param([b"c", b"0"], id="list"),
    ],
)
def test_a_key_of_the_wrong_type_is_deleted_and_logged(
    issued: Issued, caplog: pytest.LogCaptureFixture, planted: Planted
) -> None:
    caplog.set_level(logging.WARNING, logger="session_middleware")
    key = record_key(issued.config, issued.alice)
    redis_plant(key, planted)
    status, _, body = wsgi_call(issued.config(wsgi_app), "/read", f"session={issued.alice}")
    assert status == "200 OK" and (body["user"], body["data"]) == (None, {})
    assert not redis_exists(key)
    (line,) = dropped_lines(caplog)
    assert re.search(r": key [0-9a-f]{12}$", line)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_record_moved_under_another_users_cookie_is_refused(
    key_prefix: str, encrypted: bool
) -> None:
    config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        encryption_key=Fernet.generate_key() if encrypted else None,
    )
    app = config(wsgi_app)
    alice = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    wsgi_call(app, "/set?key=secret&value=alice-only", f"session={alice}")
    mallory = cookie_of(wsgi_call(app, "/login?user=mallory")[1])
    stolen = redis_hash(record_key(config, alice))
    assert "alice-only" not in str(stolen) or not encrypted
    mallory_epoch = redis_get(config.keys.epoch_key(mallory.split(".")[0]))
    # The epoch sits outside the ciphertext, so it can be swapped even when encrypted.
    redis_plant(record_key(config, mallory), {**stolen, "e": mallory_epoch})
    body = wsgi_call(app, "/read", f"session={mallory}")[2]
    assert (body["user"], body["data"]) == (None, {})
    config.redis.close()


@pytest.mark.parametrize(
    ("logged_in", "changes", "removed"),
    [
        pytest.param(*anonymous_edit({"e": "no spaces"}), id="anonymous-bad-epoch"),
        pytest.param(*anonymous_edit({"e": ""}), id="anonymous-empty-epoch"),
        pytest.param(*anonymous_edit({"c": "1" * 400}), id="huge-int-time"),
        pytest.param(*anonymous_edit({"x": "nan"}), id="nan-time"),
        pytest.param(*anonymous_edit({"r": "-1"}), id="negative-time"),
        pytest.param(*anonymous_edit({}, ("x",)), id="missing-expiry"),
        pytest.param(*anonymous_edit({"m": "[]"}), id="device-info-not-an-object"),
        pytest.param(*logged_in_edit({"u": '""'}), id="empty-user-id"),
        pytest.param(*logged_in_edit({"u": '"' + "a" * 300 + '"'}), id="long-user"),
        pytest.param(*logged_in_edit({"u": "true"}), id="bool-user"),
        pytest.param(*logged_in_edit({}, ("e",)), id="logged-in-without-epoch"),
    ],
)
def test_a_record_we_could_not_have_written_is_dropped_not_served(
    key_prefix: str, logged_in: bool, changes: dict[str, str], removed: tuple[str, ...]
) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    first = "/login?user=alice" if logged_in else "/set?key=a&value=1"
    cookie = cookie_of(wsgi_call(app, first)[1])
    key = record_key(config, cookie)
    assert set(removed) <= set(redis_hash(key))
    redis_edit(key, changes, removed)
    status, _, body = wsgi_call(app, "/set?key=b&value=2", f"session={cookie}")
    assert status == "200 OK"
    assert (body["user"], body["data"]) == (None, {"b": "2"})
    assert not redis_exists(key)
    config.redis.close()


@pytest.mark.parametrize("text", ["NaN", "1e999", "{", '"\\udc00"', "[" * 65 + "]" * 65])
@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "logged-in"])
def test_a_value_we_could_not_have_written_reads_as_none_the_session_kept(
    key_prefix: str, logged_in: bool, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Values are decoded when read: one this package could not have written reads as
    None, with a warning that names no value, and the session's next write stores None."""
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    first = "/login?user=alice" if logged_in else "/set?key=a&value=1"
    cookie = cookie_of(wsgi_call(app, first)[1])
    if logged_in:
        wsgi_call(app, "/set?key=a&value=1", f"session={cookie}")
    key = record_key(config, cookie)
    redis_edit(key, {"d:n": text}, ())
    caplog.set_level(logging.WARNING, logger="session_middleware")
    status, _, body = wsgi_call(app, "/set?key=b&value=2", f"session={cookie}")
    assert status == "200 OK"
    user = "alice" if logged_in else None
    assert (body["user"], body["data"]) == (user, {"a": "1", "b": "2", "n": None})
    assert redis_hash(key)["d:n"] == "null" and redis_hash(key)["d:b"] == '"2"'
    (line,) = [r.getMessage() for r in caplog.records if "could not be read" in r.getMessage()]
    assert text not in line
    config.redis.close()


def test_listing_survives_a_record_with_a_timestamp_out_of_range(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    cookie = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    redis_edit(record_key(config, cookie), {"c": "1e300"})
    assert config.list_sessions("alice") == []
    config.redis.close()


def test_listing_survives_a_key_of_the_wrong_type(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    planted = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    kept = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    redis_plant(record_key(config, planted), "a string")
    (listed,) = config.list_sessions("alice")  # the planted key is left out, not fatal
    assert wsgi_call(app, "/read", f"session={kept}")[2]["user"] == "alice"
    assert listed.handle in record_key(config, kept)
    config.redis.close()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_planted_record_over_max_session_bytes_is_refused_deleted_and_logged(
    key_prefix: str, caplog: pytest.LogCaptureFixture, encrypted: bool
) -> None:
    config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        max_session_bytes=2000,
        encryption_key=Fernet.generate_key() if encrypted else None,
    )
    codec = config.core.fields
    fits = codec.seal('"' + "s" * 100 + '"', "d:fits")
    app, cookie, key = planted_alice(config, {"d:fits": fits})
    assert wsgi_call(app, "/read", f"session={cookie}")[2]["data"] == {"fits": "s" * 100}
    secret = "secret-" + "x" * 2000
    redis_edit(key, {"d:big": codec.seal(f'"{secret}"', "d:big")})
    assert_dropped(app, cookie, key, caplog, secret)
    config.redis.close()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_planted_value_nested_900_levels_reads_as_none_and_is_logged(
    key_prefix: str, caplog: pytest.LogCaptureFixture, encrypted: bool
) -> None:
    config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        encryption_key=Fernet.generate_key() if encrypted else None,
    )
    secret = "secret-deep-value"
    deep = "[" * 900 + f'"{secret}"' + "]" * 900
    app, cookie, _ = planted_alice(config, {"d:deep": config.core.fields.seal(deep, "d:deep")})
    caplog.set_level(logging.WARNING, logger="session_middleware")
    status, _, body = wsgi_call(app, "/read", f"session={cookie}")
    assert status == "200 OK"
    assert (body["user"], body["data"]) == ("alice", {"deep": None})
    (line,) = [r.getMessage() for r in caplog.records if "could not be read" in r.getMessage()]
    assert "nested too deeply" in line
    logged = " ".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)
    assert secret not in logged and cookie.split(".")[1] not in logged
    config.redis.close()


@pytest.mark.parametrize(
    "planted",
    [
        pytest.param("secret-string-value", id="string"),
        pytest.param(
            '{"v":1,"c":0,"x":9e9,"r":0,"d":{"k":"secret-string-value"}}', id="old-layout"
        ),
        pytest.param([b"secret-string-value"], id="list"),
    ],
)
def test_a_key_of_another_type_at_a_sessions_key_is_deleted_and_logged(
    key_prefix: str, caplog: pytest.LogCaptureFixture, planted: Any
) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app, cookie, key = planted_alice(config, {})
    redis_plant(key, planted)
    assert_dropped(app, cookie, key, caplog, "secret-string-value")
    assert config.list_sessions("alice") == []
    config.redis.close()


@pytest.mark.parametrize(
    "stored",
    [
        b"\x80\x04\x95pickle",
        b"not json",
        b"[1, 2, 3]",
        b'{"v": 1, "d": [], "c": 0, "x": 0, "r": 0}',
        b'{"v": 99}',
        b'{"v":1,"c":0,"x":9e12,"r":0,"u":"alice","d":{},"e":""}',
        b'{"v":1,"c":0,"x":9e12,"r":0,"u":"alice","d":{},"e":"no spaces allowed"}',
    ],
)
async def test_a_corrupt_record_is_dropped_logged_and_deleted(
    config: SessionConfig, stored: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cookie = await logged_in_cookie(config)
    (key,) = session_keys(config.keys.prefix)
    redis.Redis.from_url(REDIS_URL).set(key, stored, ex=60)
    with caplog.at_level(logging.WARNING, logger="session_middleware"):
        response = await read_with(config, f"session={cookie}")
    assert response.status_code == 200
    assert response.json()["user"] is None
    assert session_keys(config.keys.prefix) == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert cookie.split(".")[1] not in warnings[0].getMessage()


def test_a_large_sessions_value_that_is_not_utf8_reads_as_none_the_session_kept(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A large record's values are decoded one by one, when read: one that is not UTF-8
    reads as None, with a warning, as a value that is not JSON does."""
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    cookie = cookie_of(wsgi_call(app, "/set?key=a&value=" + "x" * 5000)[1])
    key = record_key(config, cookie)
    redis_edit(key, {"d:n": b'"\xff"'}, ())
    caplog.set_level(logging.WARNING, logger="session_middleware")
    status, _, body = wsgi_call(app, "/set?key=b&value=2", f"session={cookie}")
    assert status == "200 OK"
    assert body["data"] == {"a": "x" * 5000, "b": "2", "n": None}
    assert redis_hash(key)["d:n"] == "null"
    assert any("could not be read" in r.getMessage() for r in caplog.records)
    config.redis.close()


def test_a_record_is_sized_in_encoded_bytes_and_a_lone_surrogate_is_refused() -> None:
    pairs = ["d:name", '"é€😀"', "c", "1"]
    assert fields_size(pairs) == 6 + 11 + 1 + 1  # é: 2 bytes, €: 3, 😀: 4
    with pytest.raises(UnicodeEncodeError):
        fields_size(["d:a", '"\ud800', "d:b", '\udc00"'])  # two halves never make a pair
