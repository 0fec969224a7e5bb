"""Each script's call builds its EVAL command from names and reads one back by name: the
KEYS and ARGV positions are known in one place (lua_scripts.py)."""

from __future__ import annotations

from typing import Any

import pytest

from session_middleware._protocol.lua_scripts import (
    LOGIN,
    WRITE,
    BumpIfCall,
    CopyAndRestampCall,
    LoginCall,
    ReadCall,
    RotateOutCall,
    WriteCall,
)
from session_middleware._protocol.script_call import ScriptCall
from session_middleware.epochs._sql_cache import FillCall

WRITE_ARGUMENTS = {
    "record": "p:{t}:s:h",
    "carried": "e1",
    "wanted": "e1",
    "stamp": "",
    "max_bytes": 65536,
    "expire": "PEXPIREAT",
    "expire_at": 1_700_000_000_000,
    "handle": "h",
    "set_pairs": ("r", "1.5", "d:a", "1"),
    "deleted": ("d:b",),
}
LOGIN_ARGUMENTS = {
    "record": "p:{t}:s:new",
    "epoch_key": "p:{t}:e",
    "index": "p:{t}:i",
    "mode": "ensure",
    "epoch": "e1",
    "epoch_ttl_ms": 90_000,
    "record_ttl_ms": 30_000,
    "handle": "new",
    "score": 1_700_000_030_000,
    "now_ms": 1_700_000_000_000,
    "max_sessions": 2,
    "record_key_base": "p:{t}:s:",
    "old_handle": "",
    "fields": ("c", "1.5", "d:a", "1"),
}


BUMP_ARGUMENTS: dict[str, Any] = {
    "epoch_key": "p:{t}:e",
    "session": "p:{t}:s:h",
    "expected": "e1",
    "epoch": "e2",
    "epoch_ttl_ms": 90_000,
    "stamp": "e1",
}


@pytest.mark.parametrize(
    "call",
    [
        ReadCall(record="p:{t}:s:h"),
        ReadCall(record="p:{t}:s:h", epoch_key="p:{t}:e"),
        WriteCall(mode="none", epoch_key=None, score="", **WRITE_ARGUMENTS),
        WriteCall(mode="none", index="p:{t}:i", score="7", **WRITE_ARGUMENTS),
        WriteCall(mode="redis", epoch_key="p:{t}:e", score="", **WRITE_ARGUMENTS),
        WriteCall(
            mode="cache",
            epoch_key="p:{t}:e",
            index="p:{t}:i",
            score="7",
            keep_empty=True,
            **WRITE_ARGUMENTS,
        ),
        LoginCall(**LOGIN_ARGUMENTS),
        LoginCall(**{**LOGIN_ARGUMENTS, "old_record": "p:{t}:s:old", "old_handle": "old"}),
        RotateOutCall(record="p:{t}:s:h", index="p:{t}:i", carried="", handle="h"),
        RotateOutCall(
            record="p:{t}:s:h", index="p:{t}:i", epoch_key="p:{t}:e", carried="e1", handle="h"
        ),
        BumpIfCall(epoch_key="p:{t}:e", expected="e1", epoch="e2", epoch_ttl_ms=90_000),
        BumpIfCall(**BUMP_ARGUMENTS),
        BumpIfCall(**BUMP_ARGUMENTS, restamp="1"),
        FillCall(cache_key="p:{t}:e", expected="", epoch="e1", ttl_ms=300_000),
        CopyAndRestampCall(
            copy_key="p:{t}:e", session="p:{t}:s:h", epoch="e2", ttl_ms=300_000, stamp="e1"
        ),
    ],
    ids=lambda call: type(call).__name__,
)
def test_a_call_reads_back_from_its_command_by_name(call: ScriptCall) -> None:
    assert type(call).of(call.command()) == call


def test_a_write_sends_its_pairs_counted_then_its_deletions_last() -> None:
    command = WriteCall(mode="none", score="", **WRITE_ARGUMENTS).command()
    assert command[:4] == ("EVAL", WRITE, 1, "p:{t}:s:h")
    assert command[-6:] == (2, "r", "1.5", "d:a", "1", "d:b")


def test_a_login_sends_the_epoch_ttl_once() -> None:
    command = LoginCall(**LOGIN_ARGUMENTS).command()
    assert command[:3] == ("EVAL", LOGIN, 3)
    assert list(command).count(90_000) == 1


def test_a_command_of_another_script_is_not_read_as_this_one() -> None:
    with pytest.raises(ValueError, match="not a call of WriteCall"):
        WriteCall.of(ReadCall(record="p:{t}:s:h").command())


def test_a_write_is_expected_to_grow_a_record_when_its_changes_add_more_than_they_remove() -> None:
    from session_middleware._protocol.records import grows

    stored = {"a": '"xx"', "b": "1"}
    assert not grows(stored, [("a", '"yy"')], [])
    assert grows(stored, [("a", '"yyy"')], [])
    assert grows(stored, [("c", "1")], [])
    assert not grows(stored, [("c", "1")], ["b"])  # "d:c" and its value take b's place
    assert not grows(stored, [("a", '"xxxxxx"')], ["b"])
    assert grows(stored, [("a", '"xxxxxxx"')], ["b"])
