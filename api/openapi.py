"""The OpenAPI document: every error response is described with the one error shape."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

__all__ = ["ErrorResponse", "install_openapi"]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `not_found`.")
    message: str = Field(description="For people; for 422 it starts with the field's name.")
    details: dict[str, Any] | None = Field(
        default=None, description="More data: `errors` for 422, the blocking command for 409…"
    )
    request_id: str | None = Field(description="The request's X-Request-ID.")


class ErrorResponse(BaseModel):
    error: ErrorDetail
    detail: str = Field(
        description="`error.message` again, where FastAPI's convention puts it, for clients "
        "written for that convention."
    )


_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_UNAVAILABLE = ("503", "Storage or broker temporarily unavailable")
_UNAUTHORIZED = ("401", "Missing, invalid, expired or revoked token")
_NOT_FOUND = ("404", "Not found, or not visible to the caller")
_BODY_ERRORS = (
    ("400", "The body is not JSON text (bytes that are not UTF-8, say)"),
    ("413", "Request body too large"),
)


def _implied_errors(path: str, operation: dict[str, Any]) -> list[tuple[str, str]]:
    """The error statuses an operation can answer by its shape, whatever its route says."""
    implied = []
    if path.startswith("/api/"):
        implied.append(_UNAVAILABLE)
    if "security" in operation:
        implied.append(_UNAUTHORIZED)
    if any(p.get("in") == "path" for p in operation.get("parameters", [])):
        implied.append(_NOT_FOUND)
    if "requestBody" in operation:
        implied.extend(_BODY_ERRORS)
    return implied


def install_openapi(app: FastAPI) -> None:
    """Describe errors with ``ErrorResponse`` (FastAPI would document its own 422 shape)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (ErrorResponse, ErrorDetail):
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(definition.pop("$defs", {}))
            components[model.__name__] = definition
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for code, text in _implied_errors(path, operation):
                    responses.setdefault(code, {"description": text})
                for code, response in responses.items():
                    if code[0] in "45":
                        response["content"] = {"application/json": {"schema": _REF}}
                        if code == "422":
                            response["description"] = "Validation error naming the field"
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign] # FastAPI's documented override
