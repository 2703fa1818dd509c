"""`submit`: a participant's side of `serve`, over HTTP (httpx)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import HarnessError


class RefusedError(HarnessError):
    """The server refused the submission; the message is its reason."""


def submit_file(path: Path, *, server: str, token: str | None, note: str = "", timeout_s: float = 300) -> dict:
    """Upload a submission CSV; the server's JSON answer (the public score) or RefusedError with its reason."""
    import httpx        # the `serve` extra

    path = Path(path)
    token = token or os.environ.get("COMPETITION_TOKEN")
    if not token:
        raise HarnessError("submit needs --token TOKEN (or COMPETITION_TOKEN): the organiser's `invite` prints it")
    if not path.is_file():
        raise HarnessError(f"{path}: no such file")
    url = server.rstrip("/") + "/api/submissions"
    try:
        with open(path, "rb") as f:
            response = httpx.post(url, files={"file": (path.name, f, "text/csv")}, data={"note": note},
                                  headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s)
    except httpx.HTTPError as e:
        raise HarnessError(f"{url}: cannot reach the server ({type(e).__name__}: {e})") from e
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:300]}
    if response.status_code >= 400:
        raise RefusedError(f"{path}: refused ({response.status_code}): {body.get('detail', body)}")
    return body
