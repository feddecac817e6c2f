"""Swagger UI at ``/docs``, served from the api itself (no CDN), under a strict policy.

The assets come from the ``fastapi-swagger`` package, which ships the current Swagger UI
distribution; they are read once at start. The page has no inline script: it loads the
bundle and ``/docs/assets/init.js``, which reads the OpenAPI URL from the page.
"""

from __future__ import annotations

import html
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

__all__ = ["ASSETS", "DOCS_PATH", "install_docs"]

DOCS_PATH = "/docs"
_ASSET_PATH = f"{DOCS_PATH}/assets"
#: Served name -> (package resource, media type).
ASSETS = {
    "swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("swagger-ui.css", "text/css"),
    "favicon-32x32.png": ("favicon-32x32.png", "image/png"),
}
_INIT_JS = """\
window.addEventListener("load", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    displayRequestDuration: true,
    filter: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
    validatorUrl: null,
  });
});
"""
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/init.js"></script>
</body>
</html>
"""
_CACHE = {"Cache-Control": "public, max-age=86400"}


def _read(name: str) -> bytes:
    return resources.files("fastapi_swagger.resources").joinpath(name).read_bytes()


def install_docs(app: FastAPI) -> None:
    """Serve the docs page and its assets; create ``app`` with ``docs_url=None``."""
    files = {name: (_read(source), media) for name, (source, media) in ASSETS.items()}
    files["init.js"] = (_INIT_JS.encode(), "text/javascript")
    title = html.escape(f"{app.title} - Swagger UI")

    async def docs_page(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = _PAGE.format(
            title=title,
            assets=html.escape(f"{root}{_ASSET_PATH}"),
            openapi=html.escape(f"{root}{app.openapi_url}"),
        )
        return HTMLResponse(page)

    async def docs_asset(name: str) -> Response:
        found = files.get(name)
        if found is None:
            return Response(status_code=404)
        content, media = found
        return Response(content, media_type=media, headers=_CACHE)

    app.add_api_route(DOCS_PATH, docs_page, methods=["GET"], include_in_schema=False)
    app.add_api_route(
        f"{_ASSET_PATH}/{{name}}", docs_asset, methods=["GET"], include_in_schema=False
    )
