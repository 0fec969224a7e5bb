"""The login plan, as a decision table: from the session a login comes from, where the
epochs live and whether the other sessions end, what becomes of the old session, where the
new session's epoch comes from, and how the login script takes it (see login_plan.py).

"beside": RedisEpochs on the session Redis (the login script reads and creates the epoch);
"given": any other provider (it gives the epoch; the script stamps it).
"""

from __future__ import annotations

import time

import pytest

from session_middleware._core.login_plan import Origin, origin, plan_login
from session_middleware._protocol.cookies import CookieRef
from session_middleware._protocol.records import Record
from session_middleware.session import Intent, Session

NOW = time.time()

TABLE = [
    # came from             epochs    others  | old session  epoch from             mode
    ("nothing",              "beside", False,  "none",      "new",                 "ensure"),
    ("anonymous",            "beside", False,  "forget",    "new",                 "ensure"),
    ("another user",         "beside", False,  "forget",    "new",                 "ensure"),
    ("this user",            "beside", False,  "replace",   "carried",             "expect"),
    ("this user, older key", "beside", False,  "move out",  "moved",               "expect"),
    ("nothing",              "given",  False,  "none",      "provider",            "given"),
    ("anonymous",            "given",  False,  "forget",    "provider",            "given"),
    ("another user",         "given",  False,  "forget",    "provider",            "given"),
    ("this user",            "given",  False,  "replace",   "provider if carried", "given"),
    ("this user, older key", "given",  False,  "move out",  "provider if carried", "given"),
    ("nothing",              "beside", True,   "none",      "bump",                "ensure"),
    ("anonymous",            "beside", True,   "forget",    "bump",                "ensure"),
    ("another user",         "beside", True,   "forget",    "bump",                "ensure"),
    ("this user",            "beside", True,   "replace",   "bump if carried",     "expect"),
    ("this user, older key", "beside", True,   "move out",  "bump if moved",       "expect"),
    ("nothing",              "given",  True,   "none",      "bump",                "given"),
    ("anonymous",            "given",  True,   "forget",    "bump",                "given"),
    ("another user",         "given",  True,   "forget",    "bump",                "given"),
    ("this user",            "given",  True,   "replace",   "bump if carried",     "given"),
    ("this user, older key", "given",  True,   "move out",  "bump if carried",     "given"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("came_from", "epochs", "end_others", "old", "epoch", "mode"),
    TABLE,
    ids=[f"{row[0]}-{row[1]}-{'end others' if row[2] else 'keep others'}" for row in TABLE],
)
def test_the_login_plan(
    came_from: Origin, epochs: str, end_others: bool, old: str, epoch: str, mode: str
) -> None:
    intent = Intent("login", "alice", end_others=end_others)
    plan = plan_login(intent, came_from, epochs_beside=epochs == "beside")
    assert (plan.old, plan.epoch, plan.mode) == (old, epoch, mode)
    assert plan.rotation == came_from.startswith("this user"), "a rotation keeps the epoch"


def test_the_table_covers_every_case() -> None:
    cases = {(row[0], row[1], row[2]) for row in TABLE}
    assert len(cases) == len(TABLE) == 5 * 2 * 2


TAG, OLDER_TAG = "t" * 24, "o" * 24


@pytest.mark.parametrize(
    ("stored_as", "epoch", "tag", "came_from"),
    [
        (None, None, None, "nothing"),
        ("anonymous", None, TAG, "anonymous"),
        ("bob", "e" * 32, TAG, "another user"),
        ("alice", None, TAG, "another user"),
        ("alice", "e" * 32, TAG, "this user"),
        ("alice", "e" * 32, OLDER_TAG, "this user, older key"),
    ],
)
def test_where_a_login_comes_from(
    stored_as: str | None, epoch: str | None, tag: str | None, came_from: str
) -> None:
    record = ref = None
    if stored_as is not None:
        user = None if stored_as == "anonymous" else stored_as
        record = Record({}, NOW, NOW + 3600, NOW, user, epoch)
        ref = CookieRef(tag or TAG, "i" * 43)
    assert origin("alice", record, ref, TAG) == came_from


@pytest.mark.parametrize(
    ("calls", "intent"),
    [
        ([], Intent()),
        (["login"], Intent("login", "alice")),
        (["login", "logout_others"], Intent("login", "alice", end_others=True)),
        (["logout_others"], Intent("keep", end_others=True)),
        (["logout_others", "login"], Intent("login", "alice")),
        (["login", "logout"], Intent("logout")),
        (["logout_others", "logout"], Intent("logout")),
        (["logout", "login"], Intent("login", "alice")),
    ],
)
def test_the_intent_a_handlers_calls_leave(calls: list[str], intent: Intent) -> None:
    session = Session({"a": 1}, "alice")
    for call in calls:
        if call == "login":
            session.login("alice")
        else:
            getattr(session, call)()
    assert session.intent == intent
