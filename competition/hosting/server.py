"""`serve`: a hosted competition over HTTP (FastAPI + uvicorn), its state in hosting.Host.

API (JSON; `Authorization: Bearer TOKEN`):
  POST /api/submissions            multipart `file` (+ `note`): 201 with the public score and interval;
                                   400 the grader's reason, 401, 409 ended, 413 too large, 429 limit used
  GET  /api/submissions[/{id}]     the caller's own submissions (the organiser: all, with private scores)
  POST /api/selection              {"submission_ids": [...]}: the final picks, at most the competition's number
  GET  /api/leaderboard            the public board; the private one too once revealed
  POST /api/participants           organiser: {"name": ...} -> a token
  POST /api/reveal | /api/rescore  organiser: reveal the private board; grade every file again
  POST /api/submissions/{id}/disqualify   organiser: {"reason": ...}
Pages (no JavaScript): `/` the leaderboard; `/login` takes a token into an HttpOnly cookie; `/me` the
participant's upload form, history and final picks.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import jinja2
from fastapi import Body, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ..errors import HarnessError, InvalidSubmissionError
from .host import (AuthError, BadRequestError, Caller, ClosedError, ForbiddenError, Host, LimitError,
                      NotFoundError)

COOKIE = "competition_token"
MULTIPART_OVERHEAD = 64 * 1024     # boundaries, the note and headers around the file
STATUS = {AuthError: 401, ForbiddenError: 403, NotFoundError: 404, BadRequestError: 400, InvalidSubmissionError: 400,
          LimitError: 429, ClosedError: 409}
TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("competition.hosting", "templates"), autoescape=True)


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


def create_app(host: Host, *, max_upload_bytes: int) -> FastAPI:
    app = FastAPI(title=f"{host.name}: a hosted competition", docs_url="/api/docs", openapi_url="/api/openapi.json",
                  redoc_url=None)
    app.add_middleware(BodyLimit, file_bytes=max_upload_bytes)

    @app.exception_handler(HarnessError)
    async def harness_error(request: Request, error: HarnessError) -> Response:
        body, headers = {"detail": str(error)}, {}
        if isinstance(error, LimitError):
            body["retry_at"] = error.retry_at.isoformat()
            headers["Retry-After"] = str(max(0, int((error.retry_at - host.clock()).total_seconds())))
        if isinstance(error, AuthError):
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(body, status_code=status_of(error), headers=headers)

    def api_caller(request: Request) -> Caller:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return host.caller(token.strip() if scheme.lower() == "bearer" else None)

    def page_caller(request: Request) -> Caller | None:
        try:
            return host.caller(request.cookies.get(COOKIE))
        except AuthError:
            return None

    async def receive_upload(request: Request) -> tuple[Path, str, str]:
        """The multipart form's `file`, written under uploads/ (a temporary name), its name and the note."""
        form = await request.form(max_files=1, max_fields=2)
        upload, note = form.get("file"), form.get("note") or ""
        if not isinstance(upload, UploadFile):
            raise BadRequestError("no file: send the submission CSV as the multipart field 'file'")
        if not isinstance(note, str):
            raise BadRequestError("note: send it as a text field")
        incoming = host.incoming_path()
        with open(incoming, "wb") as out:
            await run_in_threadpool(shutil.copyfileobj, upload.file, out)
        return incoming, upload.filename or "", note

    async def submit(request: Request, caller: Caller) -> dict:
        await run_in_threadpool(host.check_open, caller)        # 401/403/409/429 before the upload is read
        incoming, file_name, note = await receive_upload(request)
        submitted = await run_in_threadpool(host.submit, caller, incoming, file_name=file_name, note=note)
        return {**submitted, **quota(caller)}

    def quota(caller: Caller) -> dict:
        with host.connect() as db:
            used = host.day_count(db, caller, host.clock().date().isoformat())
        return {"daily_limit": host.daily_limit, "used_today": used}

    def boards() -> dict:
        revealed = host.revealed
        return {"competition": host.name, "metric": host.grader.metric.name,
                "higher_is_better": host.grader.metric.higher_is_better, "daily_limit": host.daily_limit,
                "final_picks": host.max_selected, "revealed": revealed, "public": host.public_board(),
                **({"private": host.private_board()} if revealed else {})}

    # ------------------------------------------------------------ the API
    @app.post("/api/submissions", status_code=201)
    async def post_submission(request: Request, caller: Caller = Depends(api_caller)) -> dict:
        return await submit(request, caller)

    @app.get("/api/submissions")
    def get_submissions(caller: Caller = Depends(api_caller)) -> dict:
        return {"submissions": host.history(caller), **({} if caller.is_organiser else quota(caller))}

    @app.get("/api/submissions/{sid}")
    def get_submission(sid: int, caller: Caller = Depends(api_caller)) -> dict:
        return host.submission(caller, sid)

    @app.post("/api/selection")
    def post_selection(submission_ids: list[int] = Body(..., embed=True), caller: Caller = Depends(api_caller)) -> dict:
        return {"selected": host.select(caller, submission_ids)}

    @app.get("/api/leaderboard")
    def get_leaderboard() -> dict:
        return boards()

    @app.post("/api/participants", status_code=201)
    def post_participant(name: str = Body(..., embed=True), caller: Caller = Depends(api_caller)) -> dict:
        host.require_organiser(caller)
        return {"name": name, "token": host.invite(name)}

    @app.post("/api/reveal")
    def post_reveal(caller: Caller = Depends(api_caller)) -> dict:
        host.reveal(caller)
        return boards()

    @app.post("/api/rescore")
    def post_rescore(caller: Caller = Depends(api_caller)) -> dict:
        return {"changed": host.rescore(caller)}

    @app.post("/api/submissions/{sid}/disqualify")
    def post_disqualify(sid: int, reason: str = Body("", embed=True), caller: Caller = Depends(api_caller)) -> dict:
        return host.disqualify(caller, sid, reason)

    # ------------------------------------------------------------ the pages
    def page(name: str, status_code: int = 200, **values) -> HTMLResponse:
        html = TEMPLATES.get_template(name).render(competition=host.name, metric=host.grader.metric.name,
                                                   when=when, score=score, **values)
        return HTMLResponse(html, status_code=status_code)

    @app.get("/", response_class=HTMLResponse)
    def leaderboard_page(request: Request) -> HTMLResponse:
        return page("leaderboard.html", board=boards(), caller=page_caller(request))

    @app.get("/login", response_class=HTMLResponse)
    def login_page() -> HTMLResponse:
        return page("login.html")

    @app.post("/login")
    async def login(request: Request) -> Response:
        token = (await request.form()).get("token") or ""
        try:
            host.caller(token.strip() if isinstance(token, str) else None)
        except AuthError as e:
            return page("login.html", status_code=401, error=str(e))
        response = RedirectResponse("/me", status_code=303)
        response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict")
        return response

    @app.post("/logout")
    def logout() -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    def me_page(caller: Caller, status_code: int = 200, **values) -> HTMLResponse:
        return page("me.html", status_code=status_code, caller=caller, history=host.history(caller),
                    final_picks=host.max_selected, revealed=host.revealed, **quota(caller), **values)

    @app.get("/me", response_class=HTMLResponse)
    def participant_page(request: Request, scored: int | None = None) -> Response:
        caller = page_caller(request)
        if caller is None:
            return RedirectResponse("/login", status_code=303)
        return me_page(caller, scored=scored)

    async def page_action(request: Request, act) -> Response:
        """A form posted from /me: to the login page without a token, back to /me with the reason on
        a refusal, else to where `act(caller)` says."""
        caller = page_caller(request)
        if caller is None:
            return RedirectResponse("/login", status_code=303)
        try:
            where = await act(caller)
        except HarnessError as e:
            return me_page(caller, status_code=status_of(e), error=str(e))
        return RedirectResponse(where, status_code=303)

    @app.post("/me/submissions")
    async def submit_from_page(request: Request) -> Response:
        async def act(caller: Caller) -> str:
            return f"/me?scored={(await submit(request, caller))['id']}"
        return await page_action(request, act)

    @app.post("/me/selection")
    async def select_from_page(request: Request) -> Response:
        async def act(caller: Caller) -> str:
            picks = [int(v) for v in (await request.form()).getlist("pick") if str(v).isdigit()]
            await run_in_threadpool(host.select, caller, picks)
            return "/me"
        return await page_action(request, act)

    return app


def when(iso: str) -> str:
    return f"{datetime.fromisoformat(iso):%Y-%m-%d %H:%M} UTC"


def score(estimate: dict | None) -> str:
    if estimate is None:
        return "-"
    return f"{estimate['value']:.4f} (95% CI {estimate['low']:.4f}-{estimate['high']:.4f})"
