"""The web console: static files served by the api (no build step, no separate server)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from common.protocol import protocol_js

__all__ = ["install_console"]

STATIC = Path(__file__).parent / "static"
#: Top-level files of the console; everything else lives under /js.
_FILES = {"/": "index.html", "/console.css": "console.css", "/favicon.svg": "favicon.svg"}


def install_console(app: FastAPI) -> None:
    """Serve the console at ``/`` without a catch-all, so API paths keep their 404/405."""
    for path, name in _FILES.items():

        async def serve(name: str = name) -> FileResponse:
            return FileResponse(STATIC / name)

        app.add_api_route(path, serve, methods=["GET"], include_in_schema=False)
    protocol = protocol_js()

    async def serve_protocol() -> Response:
        return Response(protocol, media_type="text/javascript")

    # Generated from common/protocol.py, so the console cannot drift from the server.
    app.add_api_route("/js/protocol.js", serve_protocol, methods=["GET"], include_in_schema=False)
    app.mount("/js", StaticFiles(directory=STATIC / "js"), name="console-js")
