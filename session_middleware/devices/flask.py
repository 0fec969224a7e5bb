"""The devices endpoints for Flask, as a blueprint registered in one line:

    from session_middleware.devices.flask import devices_blueprint

    app.register_blueprint(devices_blueprint(), url_prefix="/account/sessions")

It serves the SessionConfig given to ``init_app`` (or the `config` passed to it, which an
app wrapped with ``app.wsgi_app = config(app.wsgi_app)`` instead of ``init_app`` needs). When the
app has Flask-WTF's CSRFProtect, that protects the POSTs (a missing or wrong token is
answered 403 here); otherwise a POST must pass the same-origin check (``Sec-Fetch-Site``
or ``Origin``; see session_middleware.devices.same_origin).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import flask
from flask import Blueprint, Response, current_app

from .. import devices as shared
from .._fail_closed import FAILURES
from .._request_session import get_session
from ..config import SessionConfig
from ..session import Session

FLASK_WTF_CSRF = "csrf"  # where CSRFProtect registers itself in app.extensions


def devices_blueprint(
    config: SessionConfig | None = None,
    *,
    name: str = "session_devices",
    trusted_origins: Collection[str] = (),
) -> Blueprint:
    """A blueprint with ``GET /``, ``POST /<handle>/revoke`` and ``POST /others/revoke``."""
    blueprint = Blueprint(name, __name__)

    @blueprint.get("/")
    def list_devices() -> Response:
        return _list_devices(config)

    @blueprint.post("/<handle>/revoke")
    def revoke(handle: str) -> Response:
        return _revoke(config, handle, trusted_origins)

    @blueprint.post("/others/revoke")
    def revoke_others() -> Response:
        return _revoke_others(trusted_origins)

    try:
        from flask_wtf.csrf import CSRFError
    except ImportError:
        pass
    else:
        blueprint.register_error_handler(CSRFError, lambda error: _refused(shared.CROSS_SITE))
    return blueprint


def _configuration(config: SessionConfig | None) -> SessionConfig:
    found = config or getattr(current_app.session_interface, "config", None)
    if not isinstance(found, SessionConfig):
        raise RuntimeError("devices_blueprint() needs init_app(app, config) or a config of its own")
    return found


def _list_devices(config: SessionConfig | None) -> Response:
    session = _session()
    if session is None or session.user_id is None:
        return _refused(shared.ANONYMOUS)
    try:
        infos = _configuration(config).list_sessions(session.user_id)
    except FAILURES as error:
        return _refused(shared.unavailable(_configuration(config), error))
    response = flask.jsonify(shared.listing(infos, session.handle))
    response.headers.update(shared.NO_STORE)
    return response


def _revoke(
    config: SessionConfig | None, handle: str, trusted_origins: Collection[str]
) -> Response:
    session = _session()
    refusal = _refusal(session, trusted_origins)
    if refusal is not None:
        return _refused(refusal)
    assert session is not None and session.user_id is not None
    try:
        ended = shared.end_if_current(session, handle) or _configuration(config).revoke_session(
            session.user_id, handle
        )
    except FAILURES as error:
        return _refused(shared.unavailable(_configuration(config), error))
    if not ended:
        return _refused(shared.NOT_YOURS)
    return flask.jsonify({"revoked": handle})


def _revoke_others(trusted_origins: Collection[str]) -> Response:
    session = _session()
    refusal = _refusal(session, trusted_origins)
    if refusal is not None:
        return _refused(refusal)
    assert session is not None
    session.logout_others()
    return flask.jsonify({"revoked": "others"})


def _session() -> Session | None:
    session: Any = flask.session
    if isinstance(session, Session):
        return session
    try:  # an app wrapped with app.wsgi_app = config(app.wsgi_app) keeps Flask's own flask.session
        return get_session(flask.request)
    except LookupError:
        return None


def _refusal(session: Session | None, trusted_origins: Collection[str]) -> shared.Refusal | None:
    if session is None or session.user_id is None:
        return shared.ANONYMOUS
    if FLASK_WTF_CSRF in current_app.extensions:
        return None  # CSRFProtect checked the token before the view ran
    request = flask.request
    if not shared.same_origin(
        fetch_site=request.headers.get("Sec-Fetch-Site"),
        origin=request.headers.get("Origin"),
        own_origin=request.host_url,
        trusted_origins=trusted_origins,
    ):
        return shared.CROSS_SITE
    return None


def _refused(refusal: shared.Refusal) -> Response:
    response = flask.jsonify(refusal.body())
    response.status_code = refusal.status
    response.headers.update(refusal.headers)
    return response
