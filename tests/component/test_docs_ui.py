"""Swagger UI at /docs comes from the api itself: no CDN, its assets served, strict CSP."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from api.docs_ui import ASSETS
from api.middleware import CONTENT_SECURITY_POLICY


def _references(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', page)


def test_the_docs_page_references_only_its_own_assets(api: TestClient) -> None:
    page = api.get("/docs")

    assert page.status_code == 200
    assert sorted(_references(page.text)) == [
        "/docs/assets/favicon-32x32.png",
        "/docs/assets/init.js",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
    ]
    assert 'data-openapi-url="/openapi.json"' in page.text
    assert "<script>" not in page.text, "no inline script: script-src stays 'self'"


def test_every_docs_asset_is_served_with_its_media_type(api: TestClient) -> None:
    expected = {name: media for name, (_, media) in ASSETS.items()} | {"init.js": "text/javascript"}
    for name, media in expected.items():
        response = api.get(f"/docs/assets/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].split(";")[0] == media, name
        assert len(response.content) > 0, name
    bundle = api.get("/docs/assets/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle
    assert api.get("/docs/assets/nothing.js").status_code == 404


def test_the_docs_policy_allows_no_other_origin_and_the_rest_keeps_the_strict_one(
    api: TestClient,
) -> None:
    docs_policy = api.get("/docs").headers["content-security-policy"]
    assert "https:" not in docs_policy
    assert "http:" not in docs_policy
    assert "script-src 'self';" in docs_policy
    for path in ("/", "/docs/assets/init.js", "/health/live", "/openapi.json"):
        assert api.get(path).headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path


def test_redoc_is_not_served_since_it_would_need_a_cdn(api: TestClient) -> None:
    assert api.get("/redoc").status_code == 404
