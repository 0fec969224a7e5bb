"""A cluster read pipeline's replies past the first one its attempt could not read are read
again alone, in order: the session read's check needs its record read before its epoch."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from session_middleware._transport.cluster_reads import read_sync


class _Pipeline:
    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies
        self.retry: Any = None

    def execute_command(self, *command: Any) -> None:
        pass

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        return self.replies


class _Client:
    """Records the commands sent alone; the pipeline answers as told."""

    def __init__(self, pipeline_replies: list[Any]) -> None:
        self.pipeline_replies = pipeline_replies
        self.alone: list[str] = []

    def pipeline(self, transaction: bool = False) -> _Pipeline:
        return _Pipeline(self.pipeline_replies)

    def execute_command(self, *command: Any) -> str:
        self.alone.append(command[0])
        return f"{command[0]} again"


COMMANDS = [("HGETALL", "record"), ("GET", "epoch")]


def test_a_record_not_read_is_read_again_before_its_epoch() -> None:
    client = _Client([RedisConnectionError("gone"), "epoch read"])
    assert read_sync(client, COMMANDS) == ["HGETALL again", "GET again"]
    assert client.alone == ["HGETALL", "GET"]


def test_replies_read_before_the_first_unread_one_are_kept() -> None:
    client = _Client(["record read", RedisConnectionError("gone")])
    assert read_sync(client, COMMANDS) == ["record read", "GET again"]
    assert client.alone == ["GET"]


def test_a_pipeline_read_whole_sends_nothing_alone() -> None:
    client = _Client(["record read", "epoch read"])
    assert read_sync(client, COMMANDS) == ["record read", "epoch read"]
    assert client.alone == []
