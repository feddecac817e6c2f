"""The bare FastAPI baseline: the same request shapes as ours, with no work behind them.

``POST /api/v1/commands``: bearer header, a pydantic-validated JSON body, 202 and a JSON
body out. ``GET /api/v1/vehicles/{vehicle_id}``: bearer header, a UUID path parameter,
a JSON body out. Served by ``python -m bench.bare_app PORT`` on the same uvicorn settings
as ``python -m api`` (``api.server.uvicorn_config``: httptools, uvloop, no access log, no
proxy headers), one process.
"""

from __future__ import annotations

import sys
import uuid
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from api.server import uvicorn_config
from common.settings import Settings

__all__ = ["app"]

app = FastAPI()
_bearer = HTTPBearer(auto_error=False)


class Body(BaseModel):
    vehicle_id: uuid.UUID
    command_name: str = Field(min_length=1, max_length=64)
    command_params: dict[str, Any] = Field(default_factory=dict)


class Out(BaseModel):
    command_id: uuid.UUID
    vehicle_id: uuid.UUID
    command_name: str
    status: str


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Not authenticated")
    return credentials.credentials


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


@app.post("/api/v1/commands", status_code=status.HTTP_202_ACCEPTED, response_model=Out)
async def submit(body: Body, credentials: Credentials) -> Out:
    _token(credentials)
    return Out(
        command_id=uuid.uuid4(),
        vehicle_id=body.vehicle_id,
        command_name=body.command_name,
        status="pending",
    )


@app.get("/api/v1/vehicles/{vehicle_id}")
async def read(vehicle_id: uuid.UUID, credentials: Credentials) -> dict[str, Any]:
    _token(credentials)
    return {
        "vehicle_id": str(vehicle_id),
        "vin": "WVWZZZ1JZXW000001",
        "connection_status": "connected",
    }


if __name__ == "__main__":
    settings = Settings(_env_file=None, api_host="127.0.0.1", api_port=int(sys.argv[1]))
    uvicorn.Server(uvicorn_config(settings, app)).run()
