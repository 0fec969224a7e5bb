"""The replication policy of invalidate_user, with no Redis: given what the master
replies, what is sent, when an attempt is made again, and what is raised in the end
(session_middleware/_transport/replication.py)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from session_middleware import NotReplicated
from session_middleware._protocol.durability import Replication
from session_middleware._transport.replication import (
    Masters,
    OnMaster,
    Pause,
    replicated,
)

SET = ("SET", "sm:{t}:e", "epoch", "PX", 1000)
ONE = Replication(wanted=1, timeout_ms=100, deadline=60.0)
INFO = ("INFO", "replication")


def _info(connected: int, history: str = "h1", role: str = "master") -> dict[str, Any]:
    return {"role": role, "connected_slaves": connected, "master_replid": history}


class Master:
    """Answers the requests of `replicated` from a script of replies, and records them."""

    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)
        self.sent: list[Any] = []

    def run(self, policy: Replication, histories: set[str]) -> list[Any]:
        steps = replicated([SET], policy, histories)
        reply: Any = None
        while True:
            try:
                request = steps.send(reply)
            except StopIteration as done:
                return list(done.value)
            self.sent.append(request)
            if isinstance(request, Masters):
                reply = [[0]]
            elif isinstance(request, Pause):
                reply = None
            else:
                reply = self.replies.pop(0)


def test_a_master_without_replicas_is_not_waited_on() -> None:
    master = Master([True, _info(0)])
    assert master.run(ONE, set()) == [True]
    assert master.sent == [Masters(), OnMaster(0, [SET, INFO])]


def test_a_master_with_a_replica_is_waited_on_with_the_write_sent_again() -> None:
    master = Master([True, _info(1)], [True, 1])
    histories: set[str] = set()
    assert master.run(ONE, histories) == [True]
    assert master.sent[-1] == OnMaster(0, [SET, ("WAIT", 1, 100)])
    assert histories == {"h1"}


def test_a_replica_cut_off_is_still_waited_for_then_the_new_master_acknowledges() -> None:
    # The history was seen with a replica; now none is connected: WAIT for one anyway,
    # fail, then the master dies and the promoted replica (a new history) takes the write.
    master = Master(
        [True, _info(0, "h1")],
        [True, 0],
        RedisConnectionError("refused"),
        [True, _info(0, "h2")],
    )
    assert master.run(ONE, {"h1"}) == [True]
    assert sum(isinstance(request, Pause) for request in master.sent) == 2


def test_a_demoted_master_fails_the_attempt() -> None:
    master = Master([True, _info(0, role="slave")], [True, _info(0, "h2")])
    assert master.run(ONE, set()) == [True]
    assert isinstance(master.sent[2], Pause)


def test_a_refused_info_is_waited_on_for_every_replica_asked() -> None:
    master = Master(NoPermissionError("INFO"), [True, 1])
    assert master.run(ONE, set()) == [True]
    assert master.sent[-1] == OnMaster(0, [SET, ("WAIT", 1, 100)])


def test_past_the_deadline_the_last_failure_is_raised() -> None:
    never = Master(*([[True, _info(1)], [True, 0]] * 50))
    with pytest.raises(NotReplicated) as raised:
        never.run(Replication(wanted=1, timeout_ms=100, deadline=0.0), set())
    assert (raised.value.acknowledged, raised.value.wanted) == (0, 1)


def test_a_timed_out_attempt_is_what_is_raised_even_when_later_ones_cannot_connect() -> None:
    """The timed-out writes may have been applied: the caller must hear that the outcome
    is uncertain (InvalidationUncertain), not that the store was simply unreachable."""
    later = [RedisConnectionError("reconnecting after a backoff")] * 200
    flaky = Master(RedisTimeoutError("no reply"), *later)
    with pytest.raises(RedisTimeoutError):
        flaky.run(Replication(wanted=1, timeout_ms=100, deadline=0.3), set())
    assert len(flaky.sent) > 3, "the attempts went on after the timeout"


def test_with_no_replica_wanted_the_writes_run_alone() -> None:
    master = Master([True])
    assert master.run(Replication(wanted=0, timeout_ms=100, deadline=1.0), set()) == [True]
    assert [type(request) for request in master.sent] == [OnMaster]


# -- what a process knows of the master's replicas comes from the master -------------------

MARKED = Replication(wanted=1, timeout_ms=100, deadline=60.0, history_key="sm:v2:replicated")
ASK_MARKED = [INFO, ("GET", "sm:v2:replicated")]


def test_the_history_key_names_a_history_seen_with_a_replica_by_another_process() -> None:
    master = Master([True, _info(0, "h1"), b"h1"], [True, True, 1])
    assert master.run(MARKED, set()) == [True]
    assert master.sent[1] == OnMaster(0, [SET, *ASK_MARKED])
    # Waited for though none is connected; the key is written again before the WAIT.
    mark = ("SET", "sm:v2:replicated", "h1", "PX", 30 * 24 * 3600 * 1000)
    assert master.sent[2] == OnMaster(0, [SET, mark, ("WAIT", 1, 100)])


def test_a_history_key_of_an_older_history_does_not_block_a_promoted_master() -> None:
    master = Master([True, _info(0, "h2"), b"h1"])
    assert master.run(MARKED, set()) == [True]
    assert len(master.sent) == 2


def test_a_backlog_on_a_master_never_promoted_means_it_had_a_replica() -> None:
    info = {**_info(0, "h1"), "repl_backlog_active": 1, "master_replid2": "0" * 40}
    master = Master([True, info], [True, 1])
    assert master.run(ONE, set()) == [True]
    assert master.sent[-1] == OnMaster(0, [SET, ("WAIT", 1, 100)])


def test_a_backlog_kept_from_before_a_promotion_does_not() -> None:
    info = {**_info(0, "h2"), "repl_backlog_active": 1, "master_replid2": "h1"}
    master = Master([True, info])
    assert master.run(ONE, set()) == [True]
    assert len(master.sent) == 2


def test_a_timeout_on_a_single_redis_with_no_replica_known_is_raised_at_once() -> None:
    single = Replication(wanted=1, timeout_ms=100, deadline=60.0, follows_failover=False)
    hung = Master(RedisTimeoutError("no reply"))
    with pytest.raises(RedisTimeoutError):
        hung.run(single, set())
    assert len(hung.sent) == 2  # Masters, then the one attempt


def test_a_timeout_on_a_single_redis_known_to_have_replicas_is_tried_again() -> None:
    single = Replication(wanted=1, timeout_ms=100, deadline=60.0, follows_failover=False)
    master = Master([True, _info(1)], RedisTimeoutError("no reply"), [True, _info(1)], [True, 1])
    assert master.run(single, set()) == [True]
