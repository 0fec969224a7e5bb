"""Async views: sign in, see your devices (served by the package's devices views), reset a
password."""

from __future__ import annotations

import asyncio
import time
from html import escape
from urllib.parse import quote

from demo import pages
from demo.accounts import Accounts
from demo.environment import SESSION_COOKIE
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.urls import reverse

from session_middleware import get_session

from .session_config import config

accounts = Accounts.with_demo_users()


def csrf_field(request: HttpRequest) -> str:
    token = escape(get_token(request))
    return f'<input type="hidden" name="csrfmiddlewaretoken" value="{token}">'


def see_home() -> HttpResponse:
    response = HttpResponseRedirect("/")
    response.status_code = 303
    return response


async def home(request: HttpRequest) -> HttpResponse:
    session = get_session(request)
    if session.user_id is None:
        rejected = request.scope.get("session_rejected")  # request.META under WSGI
        notice = pages.signed_out_notice(rejected, SESSION_COOKIE in request.COOKIES)
        return HttpResponse(pages.login_page(notice=notice, form_extra=csrf_field(request)))
    session["views"] = session.get("views", 0) + 1
    endpoints = pages.DevicesEndpoints(
        list_url=reverse("session_devices:list"),
        revoke_url=reverse("session_devices:revoke", args=["HANDLE"]),
        others_url=reverse("session_devices:revoke_others"),
        csrf_token=get_token(request),
        page_url=reverse("session_devices:page"),
    )
    return HttpResponse(pages.profile_page(session, endpoints, form_extra=csrf_field(request)))


async def login(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    user_id = await asyncio.to_thread(
        accounts.authenticate, request.POST.get("username", ""), request.POST.get("password", "")
    )
    if user_id is None:
        page = pages.login_page(
            error="Wrong user name or password.", form_extra=csrf_field(request)
        )
        return HttpResponse(page, status=401)
    session = get_session(request)
    session.login(user_id)
    session["signed_in_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return see_home()


async def logout(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    get_session(request).logout()
    return see_home()


async def forgot(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(pages.forgot_page(form_extra=csrf_field(request)))
    token = accounts.issue_reset_token(request.POST.get("username", ""))
    if token is not None:
        pages.print_reset_link(request.build_absolute_uri(f"/reset?token={quote(token)}"))
    return HttpResponse(pages.forgot_sent_page())


async def reset(request: HttpRequest) -> HttpResponse:
    source = request.POST if request.method == "POST" else request.GET
    token = source.get("token", "")
    if accounts.peek_reset_token(token) is None:
        return HttpResponse(pages.invalid_link_page(), status=400)
    if request.method != "POST":
        return HttpResponse(pages.reset_page(token, form_extra=csrf_field(request)))
    try:
        user_id = await asyncio.to_thread(
            accounts.reset_password, token, request.POST.get("password", "")
        )
    except ValueError as error:
        page = pages.reset_page(token, error=str(error), form_extra=csrf_field(request))
        return HttpResponse(page, status=400)
    # Nobody is signed in here: every session of the user, on every device, ends now.
    await config.ainvalidate_user(user_id)
    return HttpResponse(pages.reset_done_page(user_id))
