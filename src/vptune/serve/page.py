"""The page of ``vptune serve`` at ``/``: plain HTML, CSS and JavaScript shipped in the package (``static/``).

No CDN and no build step: the three files are read from the installed package and served with a strict
Content-Security-Policy (only this server's own scripts, styles and images). The page holds no secret and no
data: it calls the JSON API (``/v1/tasks``, ``/v1/predict``) like any client, sending the API key the user types
(kept in the tab's ``sessionStorage``) in ``x-api-key``.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, HTTPException
from fastapi.responses import Response

__all__ = ["STATIC_FILES", "add_page", "read_static"]

STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def read_static(name: str) -> bytes:
    """The bytes of one of :data:`STATIC_FILES` from the installed package.

    Raises:
        FileNotFoundError: The package was installed without its data files (reinstall vptune).
    """
    if name not in STATIC_FILES:
        raise KeyError(name)
    return resources.files("vptune.serve").joinpath("static", name).read_bytes()


def add_page(app: FastAPI) -> None:
    """Serve the page at ``/`` and its two assets at ``/static/{app.js,style.css}`` on ``app``.

    Only the names in :data:`STATIC_FILES` are served (no path from the request reaches the file system).
    """
    files = {name: read_static(name) for name in STATIC_FILES}  # read once: a broken install fails at start

    def respond(name: str) -> Response:
        return Response(files[name], media_type=STATIC_FILES[name], headers=SECURITY_HEADERS)

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return respond("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC_FILES or name == "index.html":
            raise HTTPException(404, f"no static file '{name}'; the page is at /")
        return respond(name)
