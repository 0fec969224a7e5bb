"""How a login is carried out, decided with no I/O from what the request asked (its
Intent) and what it read: where the session it came with goes, where the new session's
epoch comes from, and how the login script treats that epoch. The specification is a table:
tests/spec/test_login_plan.py.

A login from a session already logged in as the same user is a rotation: it keeps the
session's epoch, and happens only while that epoch is still the user's and the session
still exists, so a session ended in flight is never issued again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .._protocol.cookies import CookieRef
from .._protocol.key_layout import user_id_text
from .._protocol.lua_scripts import LoginMode
from .._protocol.records import Record
from ..session import Intent

# The session the request came with, as the login sees it: none stored; anonymous; another
# user's (or one with no epoch); this user's, under the tag the login writes to; or this
# user's under an older signing key's tag.
Origin = Literal["nothing", "anonymous", "another user", "this user", "this user, older key"]

# What becomes of that session: nothing; deleted beside the login ('forget'); checked and
# deleted by the login script ('replace'); or, under an older key's tag, moved out first
# with a round trip of its own ('move out'), which also reads the user's epoch under the
# new tag when the epochs live beside the sessions.
OldSession = Literal["none", "forget", "replace", "move out"]

# Where the new session's epoch comes from:
#   new                  a new candidate; the script keeps the user's epoch if there is one
#   carried              the epoch the session carries
#   moved                the user's epoch under the new tag, read while moving out
#   provider             the provider's login_epoch
#   provider if carried  the same, refused unless it is still the epoch the session carries
#   bump                 a new epoch for the user (every other session ends)
#   bump if carried      the same, as a compare-and-set from the epoch the session carries
#   bump if moved        the same, as a compare-and-set from the one read while moving out
EpochFrom = Literal[
    "new",
    "carried",
    "moved",
    "provider",
    "provider if carried",
    "bump",
    "bump if carried",
    "bump if moved",
]


@dataclass(frozen=True, slots=True)
class LoginPlan:
    """How one login is carried out (see the module's docstring)."""

    old: OldSession
    epoch: EpochFrom
    mode: LoginMode  # how the login script takes the epoch (lua_scripts.LoginMode)

    @property
    def rotation(self) -> bool:
        """A rotation of this user's session (reported as such), not a new login."""
        return self.old in ("replace", "move out")


_OLD: dict[Origin, OldSession] = {
    "nothing": "none",
    "anonymous": "forget",
    "another user": "forget",
    "this user": "replace",
    "this user, older key": "move out",
}


def origin(user_id: Any, record: Record | None, ref: CookieRef | None, new_tag: str) -> Origin:
    """The session a login of `user_id` under `new_tag` comes from (see Origin)."""
    if record is None or ref is None:
        return "nothing"
    if record.user_id is None:
        return "anonymous"
    if record.epoch is None or user_id_text(record.user_id) != user_id_text(user_id):
        return "another user"
    return "this user" if ref.tag == new_tag else "this user, older key"


def plan_login(intent: Intent, came_from: Origin, epochs_beside: bool) -> LoginPlan:
    """The plan of a login asked by `intent`, from a session `came_from`, with the epochs
    beside the sessions (RedisEpochs on the same Redis: the login script reads and creates
    them) or not (the provider gives the epoch, and the script stamps it)."""
    old = _OLD[came_from]
    rotation = old in ("replace", "move out")
    moved = old == "move out" and epochs_beside
    epoch: EpochFrom
    if intent.end_others:
        epoch = ("bump if moved" if moved else "bump if carried") if rotation else "bump"
    elif epochs_beside:
        epoch = ("moved" if moved else "carried") if rotation else "new"
    else:
        epoch = "provider if carried" if rotation else "provider"
    mode: LoginMode = "given"
    if epochs_beside:
        mode = "expect" if rotation else "ensure"
    return LoginPlan(old, epoch, mode)
