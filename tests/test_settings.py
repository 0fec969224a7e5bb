"""The settings of a configuration: validated when it is built, frozen after, typed as
``sessions(...)`` takes them, and never showing a secret in their repr."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from session_middleware import ConfigurationError, sessions
from session_middleware.config import DEFAULT_REDIS_URL, Settings

from .support import SECRET

PASSWORD = "hunter2-in-the-url"
ROOT = Path(__file__).resolve().parent.parent


def test_a_setting_cannot_be_changed_once_built() -> None:
    config = sessions(secret_key=SECRET)
    with pytest.raises(dataclasses.FrozenInstanceError, match="max_age"):
        config.settings.max_age = 5  # type: ignore[misc]
    assert config.settings.max_age == Settings().max_age


def test_the_configuration_itself_is_frozen() -> None:
    config = sessions(secret_key=SECRET)
    core = config.core
    with pytest.raises(AttributeError, match=r"frozen: max_age cannot be set.*sessions\(\.\.\.\)"):
        config.max_age = 5  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="frozen: core cannot be set"):
        config.core = core
    assert not hasattr(config, "max_age")


def test_settings_are_checked_without_a_configuration() -> None:
    with pytest.raises(ConfigurationError, match="same_site must be"):
        Settings(same_site="loose")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="redis= takes a redis-py client, not str"):
        Settings(redis="redis://127.0.0.1:6379/0")  # type: ignore[arg-type]


def test_the_defaults_that_depend_on_other_settings_are_filled_in() -> None:
    settings = sessions(secret_key=SECRET, exclude_paths=["/static/"], redis_timeout=0.5).settings
    assert settings.redis_url == DEFAULT_REDIS_URL
    assert settings.exclude_paths == ("/static/",)
    assert settings.invalidate_wait_timeout_ms is None
    assert settings.wait_timeout_ms == 250
    assert sessions(secret_key=SECRET, redis_timeout=None).settings.wait_timeout_ms == 1000


def test_the_keywords_given_are_told_from_the_defaults() -> None:
    config = sessions(secret_key=SECRET, https_only=False)
    assert config.given_settings == {"secret_key", "https_only"}


def test_sessions_takes_exactly_the_settings_as_keywords() -> None:
    parameters = inspect.signature(sessions).parameters
    assert list(parameters) == [field.name for field in dataclasses.fields(Settings)]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
    assert parameters["same_site"].default == "lax"


def test_the_repr_of_the_settings_shows_no_secret() -> None:
    url = f"redis://user:{PASSWORD}@127.0.0.1:6379/0"
    key = "k" * 43 + "="
    settings = sessions(secret_key=SECRET, redis_url=url, encryption_key=key).settings
    shown = repr(settings)
    assert "max_age=" in shown
    for secret in (SECRET, PASSWORD, key):
        assert secret not in shown


def test_a_type_checker_sees_the_keywords_and_their_types(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import redis.asyncio\n"
        "from session_middleware import sessions\n"
        "good = sessions(secret_key='k', redis=redis.asyncio.Redis(), max_age=60)\n"
        "misspelt = sessions(secret_key='k', max_agee=60)\n"
        "not_a_client = sessions(secret_key='k', redis='redis://127.0.0.1')\n"
        "good.settings.max_age = 5\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == ["4", "5", "6"], result.stdout
    assert 'did you mean "max_age"' in errors[0]
