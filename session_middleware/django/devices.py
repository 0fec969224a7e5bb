"""The devices pages and endpoints for Django, included in one line:

    path("account/sessions/", include("session_middleware.django.devices")),

That serves the engine's configuration (``SESSION_ENGINE = "session_middleware.django"``);
a project that wraps its ASGI or WSGI app with ``sessions(...)`` instead passes that
config: ``include(devices.urls(config))``. The URL names live in the ``session_devices``
namespace:

- ``page`` (GET): an HTML list, the template ``session_middleware/devices.html`` (override
  it in your own templates), with a button to sign out each device and the others;
- ``list`` (GET ``api/``): the JSON list;
- ``revoke`` (POST ``<handle>/revoke/``) and ``revoke_others`` (POST ``others/revoke/``):
  JSON for a request that accepts JSON, else a redirect back to the page.

The POSTs are protected by Django's CSRF check (``csrf_protect``, with or without
CsrfViewMiddleware): a form sends ``{% csrf_token %}``, a script the ``X-CSRFToken`` header.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from .._fail_closed import FAILURES
from .._request_session import get_session
from ..config import SessionConfig
from ..devices import (
    ANONYMOUS,
    NO_STORE,
    NOT_YOURS,
    Refusal,
    end_if_current,
    listing,
    unavailable,
)
from ..session import Session
from ._settings import get_config
from .engine import SessionStore

app_name = "session_devices"
TEMPLATE = "session_middleware/devices.html"


class DevicesViews:
    """The views over one configuration (None: the engine's, from the settings)."""

    def __init__(self, config: SessionConfig | None = None) -> None:
        self._config = config

    @property
    def config(self) -> SessionConfig:
        return self._config if self._config is not None else get_config()

    def patterns(self) -> list[URLPattern]:
        return [
            path("", ensure_csrf_cookie(require_GET(self.page)), name="page"),
            path("api/", ensure_csrf_cookie(require_GET(self.list_json)), name="list"),
            path(
                "others/revoke/",
                csrf_protect(require_POST(self.revoke_others)),
                name="revoke_others",
            ),
            path("<str:handle>/revoke/", csrf_protect(require_POST(self.revoke)), name="revoke"),
        ]

    def page(self, request: HttpRequest) -> HttpResponse:
        session = get_session(request)
        if session.user_id is None:
            return HttpResponse(ANONYMOUS.error, status=ANONYMOUS.status, content_type="text/plain")
        try:
            infos = self.config.list_sessions(session.user_id)
        except FAILURES as error:
            return _refused(unavailable(self.config, error))
        devices = [{"info": info, "current": info.handle == session.handle} for info in infos]
        namespace = _namespace(request)
        context = {"devices": devices, "namespace": namespace}
        return TemplateResponse(request, TEMPLATE, context, headers=NO_STORE)

    def list_json(self, request: HttpRequest) -> HttpResponse:
        session = get_session(request)
        if session.user_id is None:
            return _refused(ANONYMOUS)
        try:
            infos = self.config.list_sessions(session.user_id)
        except FAILURES as error:
            return _refused(unavailable(self.config, error))
        return JsonResponse(listing(infos, session.handle), headers=NO_STORE)

    def revoke(self, request: HttpRequest, handle: str) -> HttpResponse:
        session = get_session(request)
        if session.user_id is None:
            return _refused(ANONYMOUS)
        try:
            ended = _end_if_current(request, session, handle) or self.config.revoke_session(
                session.user_id, handle
            )
        except FAILURES as error:
            return _refused(unavailable(self.config, error))
        if not ended:
            return _refused(NOT_YOURS)
        return _done(request, {"revoked": handle})

    def revoke_others(self, request: HttpRequest) -> HttpResponse:
        session = get_session(request)
        if session.user_id is None:
            return _refused(ANONYMOUS)
        store = _engine_store(request, session)
        if store is not None:
            store.logout_others()
        else:
            session.logout_others()
        return _done(request, {"revoked": "others"})


def urls(config: SessionConfig | None = None) -> tuple[list[URLPattern], str]:
    """What ``include()`` takes: the devices URLs over `config` (default: the engine's)."""
    return DevicesViews(config).patterns(), app_name


urlpatterns = DevicesViews().patterns()


def _end_if_current(request: HttpRequest, session: Session, handle: str) -> bool:
    """Revoking this device signs it out as Django's logout does: the session is flushed."""
    store = _engine_store(request, session)
    if store is not None:
        if session.handle is None or handle != session.handle:
            return False
        store.flush()
        return True
    return end_if_current(session, handle)


def _engine_store(request: HttpRequest, session: Session) -> SessionStore | None:
    """``request.session`` when it is this package's engine holding `session`; None when
    the session comes from ``sessions(...)`` wrapping the app."""
    store = getattr(request, "session", None)
    if isinstance(store, SessionStore) and store.as_session() is session:
        return store
    return None


def _namespace(request: HttpRequest) -> str:
    match = request.resolver_match
    return match.namespace if match is not None and match.namespace else app_name


def _done(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    if _wants_html(request):
        return HttpResponseRedirect(reverse(f"{_namespace(request)}:page"), status=303)
    return JsonResponse(body)


def _wants_html(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept


def _refused(refusal: Refusal) -> HttpResponse:
    return JsonResponse(refusal.body(), status=refusal.status, headers=refusal.headers)
