"""``manage.py sessions list|revoke|invalidate USER``: the command line's user commands,
configured by the project's settings (SESSION_MIDDLEWARE, the key from SECRET_KEY). USER is
the user's primary key; the command reports as the command line does: where it looked,
what it found, and never a success it did not have."""

from __future__ import annotations

import argparse
import contextlib
import io
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...._fail_closed import FAILURES
from ....cli import NOTHING, UNREACHABLE, USAGE, USER_COMMANDS
from ....errors import ConfigurationError, UnknownUser
from ..._settings import get_config
from ...auth import user_id_of


class Command(BaseCommand):  # type: ignore[misc]
    """``manage.py sessions``: the command line's list, revoke and invalidate."""

    help = "List, revoke or invalidate a user's sessions (USER: the user's primary key)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = actions.add_parser("list", help="the user's active sessions")
        listing.add_argument("user", help="the user's primary key")
        revoke = actions.add_parser("revoke", help="end one session of the user")
        revoke.add_argument("user", help="the user's primary key")
        revoke.add_argument("handle", help="the session's handle, as list shows it")
        invalidate = actions.add_parser("invalidate", help="end every session of the user")
        invalidate.add_argument("user", help="the user's primary key")
        invalidate.add_argument("--delete", action="store_true", help="also delete the records now")
        invalidate.add_argument(
            "--force",
            action="store_true",
            help="set a new epoch even when the user has no epoch and no session",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        arguments = argparse.Namespace(
            user=_session_user_id(options["user"]),
            handle=options.get("handle"),
            json=options["json"],
            int_ids=False,
            delete=options.get("delete", False),
            force=options.get("force", False),
        )
        out, err = io.StringIO(), io.StringIO()
        try:
            config = get_config()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = USER_COMMANDS[options["action"]](config, arguments)
        except (ConfigurationError, ImproperlyConfigured) as error:
            raise CommandError(str(error), returncode=USAGE) from error
        except UnknownUser as error:
            raise CommandError(str(error), returncode=NOTHING) from error
        except FAILURES as error:
            raise CommandError(f"Redis did not answer: {error}", returncode=UNREACHABLE) from error
        self.stdout.write(out.getvalue(), ending="")
        reported = err.getvalue().strip().removeprefix("session-middleware: ")
        if code:
            raise CommandError(reported, returncode=code)
        if reported:
            self.stderr.write(reported)


def _session_user_id(primary_key: str) -> str:
    """The id sessions are bound to: the text Django stores under _auth_user_id, of the
    user with this primary key (CommandError if there is none)."""
    users = get_user_model()._default_manager
    try:
        user = users.get(pk=primary_key)
    except (users.model.DoesNotExist, ValueError, ValidationError):
        raise CommandError(
            f"no user has the primary key {primary_key!r}", returncode=NOTHING
        ) from None
    return str(user_id_of(user))
