"""`serve`: a hosted competition over HTTP (FastAPI + uvicorn), its state in hosting.Host.

API (JSON; `Authorization: Bearer TOKEN`; the docs at /api/docs take the token through Authorize):
  POST /api/submissions            multipart `file` (+ `note`): 201 with the public score and interval;
                                   400 the grader's reason, 401, 409 ended, 413 too large, 429 a limit
                                   (the day's, or too many rejected uploads), 507 no disk, 500 a grader fault
  GET  /api/submissions[/{id}]     the caller's own submissions (the organiser: all, with private scores)
  POST /api/selection              {"submission_ids": [...]}: the final picks, at most the competition's number
  GET  /api/leaderboard            the public board; the private one too once revealed
  POST /api/participants           organiser: {"name": ...} -> a token
  POST /api/participants/{name}/revoke   organiser: end a participant's token and sessions
  POST /api/reveal | /api/rescore  organiser: reveal the private board; grade every file again
  POST /api/submissions/{id}/disqualify   organiser: {"reason": ...}
Pages (no JavaScript): `/` the leaderboard; `/login` takes a token and opens a session (the cookie
holds a random session id, never the token; `/logout` ends it on the server); `/me` a participant's
upload form, history and final picks; `/organiser` the organiser's: participants and their counts,
invite, revoke, disqualify, rescore, reveal, the private board with the shake-up.

Every form the pages post is checked for its Origin (or Referer) being this server's: a page of
another site, a sibling host or another port cannot post with the session cookie. Grading runs on
the host's worker pool; a request awaits it without holding a thread, so pages stay quick while
uploads are graded.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
from fastapi import APIRouter, Body, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ..errors import HarnessError, InvalidSubmissionError
from .host import (AuthError, BadRequestError, Caller, ClosedError, ForbiddenError, GradingError, Host, LimitError,
                   NotFoundError, StorageError, submission_id)

SESSION_COOKIE = "competition_session"
MULTIPART_OVERHEAD = 64 * 1024     # boundaries, the note and headers around the file
STATUS = {AuthError: 401, ForbiddenError: 403, NotFoundError: 404, BadRequestError: 400, InvalidSubmissionError: 400,
          LimitError: 429, ClosedError: 409, StorageError: 507, GradingError: 500}
TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("competition.hosting", "templates"), autoescape=True)
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", b"frame-ancestors 'none'; form-action 'self'"),
                    (b"referrer-policy", b"same-origin")]
UPLOAD_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "the submission CSV"},
                   "note": {"type": "string", "maxLength": 500, "description": "shown beside it"}}}}}}}


def status_of(error: HarnessError) -> int:
    return next((code for kind, code in STATUS.items() if isinstance(error, kind)), 400)


class BodyLimit:
    """Refuse a request body over the limit without reading it whole: at once from its
    Content-Length, or, for a chunked body, as soon as the count passes the limit. `file_bytes`
    is the limit as people read it (the file's); the body may carry `MULTIPART_OVERHEAD` more."""

    def __init__(self, app, file_bytes: int) -> None:
        self.app, self.file_bytes, self.max_bytes = app, file_bytes, file_bytes + MULTIPART_OVERHEAD

    def message(self, length: int | None) -> str:
        return (f"{'' if length is None else f'{length:,} bytes: '}the upload is over the limit of "
                f"{self.file_bytes:,} bytes for a submission file of this competition")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await JSONResponse({"detail": self.message(int(length))}, status_code=413)(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self.message(None))
            return message
        await self.app(scope, counted, send)


class SecurityHeaders:
    """nosniff, no framing by other sites, same-origin referrers and form targets, on every response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + SECURITY_HEADERS
            await send(message)
        await self.app(scope, receive, with_headers)


def own_origin(request: Request) -> str:
    """scheme://host[:port] of this server as the browser addresses it (behind a trusted proxy, the
    scheme its X-Forwarded-Proto says)."""
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def check_same_origin(request: Request) -> None:
    """A cookie-authenticated form must come from this server's own pages: its Origin header (every
    current browser sends one on a POST), else its Referer, must name this server."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        referer = urlsplit(request.headers.get("referer", ""))
        origin = f"{referer.scheme}://{referer.netloc}" if referer.scheme and referer.netloc else None
    if origin != own_origin(request):
        raise ForbiddenError(f"a form from {origin or 'an unnamed origin'} is refused: post it from "
                             f"{own_origin(request)}'s own pages")


BEARER = HTTPBearer(auto_error=False, description="a participant's or the organiser's token (from `invite`)")


class Site:
    """What every route shares: the host, who is calling (a bearer token or a session cookie), the
    upload, the quota and boards, and the pages' rendering."""

    def __init__(self, host: Host, max_upload_bytes: int) -> None:
        self.host, self.max_upload_bytes = host, max_upload_bytes

    def api_caller(self, credentials: HTTPAuthorizationCredentials | None = Depends(BEARER)) -> Caller:
        return self.host.caller(credentials.credentials.strip() if credentials else None)

    def page_caller(self, request: Request) -> Caller | None:
        try:
            return self.host.session_caller(request.cookies.get(SESSION_COOKIE))
        except AuthError:
            return None

    async def receive_upload(self, request: Request) -> tuple[Path, str, str]:
        """The multipart form's `file`, written under uploads/ (a temporary name, removed if the
        request fails), its name and the note."""
        form = await request.form(max_files=1, max_fields=2)
        upload, note = form.get("file"), form.get("note") or ""
        if not isinstance(upload, UploadFile):
            raise BadRequestError("no file: send the submission CSV as the multipart field 'file'")
        if not isinstance(note, str):
            raise BadRequestError("note: send it as a text field")
        incoming = self.host.incoming_path()
        try:
            with open(incoming, "wb") as out:
                await run_in_threadpool(shutil.copyfileobj, upload.file, out)
        except BaseException:
            incoming.unlink(missing_ok=True)
            raise
        return incoming, upload.filename or "", note

    async def submit(self, request: Request, caller: Caller) -> dict:
        host = self.host
        await run_in_threadpool(host.check_open, caller)        # 401/403/409/429 before the upload is read
        await run_in_threadpool(host.check_disk, self.max_upload_bytes)
        incoming, file_name, note = await self.receive_upload(request)
        sid = await run_in_threadpool(host.accept, caller, incoming, file_name=file_name, note=note)
        await asyncio.wrap_future(host.grading.grade(sid))      # on the grading pool, no request thread held
        submitted = await run_in_threadpool(host.submission, caller, sid)
        return {**submitted, **self.quota(caller)}

    def quota(self, caller: Caller) -> dict:
        return {"daily_limit": self.host.daily_limit, "used_today": self.host.used_today(caller)}

    def boards(self) -> dict:
        host = self.host
        revealed, ends = host.revealed, host.ends_at
        return {"competition": host.name, "metric": host.grader.metric.name,
                "higher_is_better": host.grader.metric.higher_is_better, "daily_limit": host.daily_limit,
                "final_picks": host.max_selected, "revealed": revealed,
                "ends_at": None if ends is None else ends.isoformat(), "ended": revealed or host.ended,
                "public": host.public_board(), **({"private": host.private_board()} if revealed else {})}

    def page(self, request: Request, name: str, status_code: int = 200, **values) -> HTMLResponse:
        host = self.host
        html = TEMPLATES.get_template(name).render(
            competition=host.name, metric=host.grader.metric.name, when=when, score=score, number=number,
            base=request.scope.get("root_path", "").rstrip("/"), ends_at=host.ends_at,
            ended=host.revealed or host.ended, **values)
        return HTMLResponse(html, status_code=status_code)

    @staticmethod
    def redirect(request: Request, path: str) -> RedirectResponse:
        return RedirectResponse(request.scope.get("root_path", "").rstrip("/") + path, status_code=303)

    def me_page(self, request: Request, caller: Caller, status_code: int = 200, **values) -> HTMLResponse:
        return self.page(request, "me.html", status_code=status_code, caller=caller, history=self.host.history(caller),
                         final_picks=self.host.max_selected, revealed=self.host.revealed, **self.quota(caller),
                         **values)

    def organiser_page(self, request: Request, caller: Caller, status_code: int = 200, **values) -> HTMLResponse:
        return self.page(request, "organiser.html", status_code=status_code, caller=caller,
                         participants=self.host.participants(caller), history=self.host.history(caller),
                         board=self.boards(), **values)

    async def page_action(self, request: Request, act, organiser: bool = False) -> Response:
        """A form posted from /me or /organiser: refused from another origin; to the login page without
        a session; back to its page with the reason on a refusal, else to where `act(caller)` says."""
        check_same_origin(request)
        caller = self.page_caller(request)
        if caller is None:
            return self.redirect(request, "/login")
        try:
            if organiser:
                self.host.require_organiser(caller)
            where = await act(caller)
        except HarnessError as e:
            if caller.is_organiser:
                return self.organiser_page(request, caller, status_code=status_of(e), error=str(e))
            return self.me_page(request, caller, status_code=status_of(e), error=str(e))
        return where if isinstance(where, Response) else self.redirect(request, where)


def api_routes(site: Site) -> APIRouter:
    """The JSON API: a participant's submissions and picks, the boards, the organiser's actions."""
    router, host = APIRouter(prefix="/api"), site.host

    @router.post("/submissions", status_code=201, openapi_extra=UPLOAD_FORM)
    async def post_submission(request: Request, caller: Caller = Depends(site.api_caller)) -> dict:
        return await site.submit(request, caller)

    @router.get("/submissions")
    def get_submissions(caller: Caller = Depends(site.api_caller)) -> dict:
        return {"submissions": host.history(caller), **({} if caller.is_organiser else site.quota(caller))}

    @router.get("/submissions/{sid}")
    def get_submission(sid: str, caller: Caller = Depends(site.api_caller)) -> dict:
        return host.submission(caller, submission_id(sid))

    @router.post("/selection")
    def post_selection(submission_ids: list[int | str] = Body(..., embed=True),
                       caller: Caller = Depends(site.api_caller)) -> dict:
        return {"selected": host.select(caller, [submission_id(i) for i in submission_ids])}

    @router.get("/leaderboard")
    def get_leaderboard() -> dict:
        return site.boards()

    @router.post("/participants", status_code=201)
    def post_participant(name: str = Body(..., embed=True), caller: Caller = Depends(site.api_caller)) -> dict:
        host.require_organiser(caller)
        return {"name": name, "token": host.invite(name)}

    @router.get("/participants")
    def get_participants(caller: Caller = Depends(site.api_caller)) -> dict:
        return {"participants": host.participants(caller)}

    @router.post("/participants/{name}/revoke")
    def post_revoke(name: str, caller: Caller = Depends(site.api_caller)) -> dict:
        host.require_organiser(caller)
        host.revoke(name)
        return {"name": name, "revoked": True}

    @router.post("/reveal")
    def post_reveal(caller: Caller = Depends(site.api_caller)) -> dict:
        host.reveal(caller)
        return site.boards()

    @router.post("/rescore")
    def post_rescore(caller: Caller = Depends(site.api_caller)) -> dict:
        return {"changed": host.rescore(caller)}

    @router.post("/submissions/{sid}/disqualify")
    def post_disqualify(sid: str, reason: str = Body("", embed=True),
                        caller: Caller = Depends(site.api_caller)) -> dict:
        return host.disqualify(caller, submission_id(sid), reason)

    return router


def participant_pages(site: Site) -> APIRouter:
    """The leaderboard, logging in and out, a participant's uploads and picks."""
    router, host = APIRouter(), site.host

    @router.get("/", response_class=HTMLResponse)
    def leaderboard_page(request: Request) -> HTMLResponse:
        return site.page(request, "leaderboard.html", board=site.boards(), caller=site.page_caller(request))

    @router.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> HTMLResponse:
        return site.page(request, "login.html")

    @router.post("/login")
    async def login(request: Request) -> Response:
        try:
            check_same_origin(request)
            token = (await request.form()).get("token") or ""
            session = await run_in_threadpool(host.open_session, token.strip() if isinstance(token, str) else "")
            caller = await run_in_threadpool(host.session_caller, session)
        except (AuthError, ForbiddenError) as e:
            return site.page(request, "login.html", status_code=status_of(e), error=str(e))
        response = site.redirect(request, "/organiser" if caller.is_organiser else "/me")
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path=(request.scope.get("root_path") or "/"))
        return response

    @router.post("/logout")
    def logout(request: Request) -> Response:
        check_same_origin(request)
        host.end_session(request.cookies.get(SESSION_COOKIE))
        response = site.redirect(request, "/")
        response.delete_cookie(SESSION_COOKIE, path=(request.scope.get("root_path") or "/"))
        return response

    @router.get("/me", response_class=HTMLResponse)
    def participant_page(request: Request, scored: str | None = None) -> Response:
        caller = site.page_caller(request)
        if caller is None:
            return site.redirect(request, "/login")
        if caller.is_organiser:
            return site.redirect(request, "/organiser")
        return site.me_page(request, caller, scored=scored if scored and scored.isdecimal() else None)

    @router.post("/me/submissions")
    async def submit_from_page(request: Request) -> Response:
        async def act(caller: Caller) -> str:
            return f"/me?scored={(await site.submit(request, caller))['id']}"
        return await site.page_action(request, act)

    @router.post("/me/selection")
    async def select_from_page(request: Request) -> Response:
        async def act(caller: Caller) -> str:
            picks = [submission_id(v) for v in (await request.form()).getlist("pick")
                     if re.fullmatch(r"[0-9]{1,19}", str(v))]
            await run_in_threadpool(host.select, caller, picks)
            return "/me"
        return await site.page_action(request, act)

    return router


async def form_value(request: Request, name: str) -> str:
    value = (await request.form()).get(name) or ""
    return value.strip() if isinstance(value, str) else ""


def organiser_pages(site: Site) -> APIRouter:
    """The organiser's page and its forms: invite, revoke, disqualify, rescore, reveal."""
    router, host = APIRouter(prefix="/organiser"), site.host

    @router.get("", response_class=HTMLResponse)
    def organiser_home(request: Request) -> Response:
        caller = site.page_caller(request)
        if caller is None:
            return site.redirect(request, "/login")
        if not caller.is_organiser:
            return site.redirect(request, "/me")
        return site.organiser_page(request, caller)

    @router.post("/invite")
    async def invite_from_page(request: Request) -> Response:
        async def act(caller: Caller) -> Response:
            name = await form_value(request, "name")
            token = await run_in_threadpool(host.invite, name)
            return site.organiser_page(request, caller, invited={"name": name, "token": token})
        return await site.page_action(request, act, organiser=True)

    @router.post("/revoke")
    async def revoke_from_page(request: Request) -> Response:
        async def act(caller: Caller) -> str:
            await run_in_threadpool(host.revoke, await form_value(request, "name"))
            return "/organiser"
        return await site.page_action(request, act, organiser=True)

    @router.post("/disqualify")
    async def disqualify_from_page(request: Request) -> Response:
        async def act(caller: Caller) -> str:
            sid = submission_id(await form_value(request, "submission"))
            await run_in_threadpool(host.disqualify, caller, sid, await form_value(request, "reason"))
            return "/organiser"
        return await site.page_action(request, act, organiser=True)

    @router.post("/rescore")
    async def rescore_from_page(request: Request) -> Response:
        async def act(caller: Caller) -> Response:
            changed = await run_in_threadpool(host.rescore, caller)
            return site.organiser_page(request, caller, notice=f"rescored: {changed} submission(s) changed")
        return await site.page_action(request, act, organiser=True)

    @router.post("/reveal")
    async def reveal_from_page(request: Request) -> Response:
        async def act(caller: Caller) -> str:
            await run_in_threadpool(host.reveal, caller)
            return "/organiser"
        return await site.page_action(request, act, organiser=True)

    return router


def create_app(host: Host, *, max_upload_bytes: int, trusted_proxies: list[str] | str = "127.0.0.1") -> FastAPI:
    """The app: the API, the participants' pages and the organiser's, behind the upload limit, the
    security headers and the proxy headers of `trusted_proxies` (uvicorn's --forwarded-allow-ips). A
    path prefix a reverse proxy serves it under is the server's root path (`serve --root-path /meetup`):
    pages link and set their cookie within it."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        host.close()            # the grading pool finishes what it holds

    app = FastAPI(title=f"{host.name}: a hosted competition", docs_url="/api/docs", openapi_url="/api/openapi.json",
                  redoc_url=None, lifespan=lifespan)
    app.add_middleware(BodyLimit, file_bytes=max_upload_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=trusted_proxies)

    @app.exception_handler(HarnessError)
    async def harness_error(request: Request, error: HarnessError) -> Response:
        body, headers = {"detail": str(error)}, {}
        if isinstance(error, LimitError) and error.retry_at is not None:
            body["retry_at"] = error.retry_at.isoformat()
            headers["Retry-After"] = str(max(0, int((error.retry_at - host.clock()).total_seconds())))
        if isinstance(error, AuthError):
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(body, status_code=status_of(error), headers=headers)

    site = Site(host, max_upload_bytes)
    for router in (api_routes(site), participant_pages(site), organiser_pages(site)):
        app.include_router(router)
    return app


def when(iso: str | datetime | None) -> str:
    if iso is None:
        return "-"
    moment = iso if isinstance(iso, datetime) else datetime.fromisoformat(iso)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def number(value: float | None) -> str:
    """A score; "-" where the metric is undefined on its split (stored as no score)."""
    return "-" if value is None else f"{value:.4f}"


def score(estimate: dict | None) -> str:
    if estimate is None or estimate.get("value") is None:
        return "-"
    low, high = estimate.get("low"), estimate.get("high")
    interval = "" if low is None or high is None else f" (95% CI {low:.4f}-{high:.4f})"
    return f"{estimate['value']:.4f}{interval}"
