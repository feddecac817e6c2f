"""REST and WebSocket access for the CLI, with token refresh and stream resume."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2 as httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from cli import config
from common.protocol import (
    BEARER_PREFIX,
    SUBPROTOCOL,
    TERMINAL_STATUSES,
    CloseCode,
    should_reconnect,
)

__all__ = ["TERMINAL_STATUSES", "ApiError", "Client"]

#: Refresh this many seconds before the access token expires.
REFRESH_MARGIN_S = 30


class ApiError(Exception):
    """The service refused a request; ``message`` is its explanation."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        raise ApiError(response.status_code, "http_error", response.text[:200]) from None
    raise ApiError(response.status_code, error["code"], error["message"], error.get("details"))


class Client:
    def __init__(self, credentials: config.Credentials) -> None:
        self.credentials = credentials
        self.http = httpx.Client(base_url=credentials.api_url, timeout=15)

    @classmethod
    def login(cls, api_url: str, username: str, password: str) -> Client:
        with httpx.Client(base_url=api_url, timeout=15) as http:
            response = http.post(
                "/api/v1/auth/login", json={"username": username, "password": password}
            )
        _raise_for(response)
        pair = response.json()
        credentials = config.Credentials(
            api_url=api_url,
            username=username,
            access_token=pair["access_token"],
            refresh_token=pair["refresh_token"],
            expires_at=time.time() + pair["expires_in"],
        )
        config.save(credentials)
        return cls(credentials)

    def close(self) -> None:
        self.http.close()

    def token(self) -> str:
        """A valid access token, refreshed (and saved) when it is about to expire."""
        if time.time() >= self.credentials.expires_at - REFRESH_MARGIN_S:
            self.refresh()
        return self.credentials.access_token

    def refresh(self) -> None:
        response = self.http.post(
            "/api/v1/auth/refresh", json={"refresh_token": self.credentials.refresh_token}
        )
        _raise_for(response)
        pair = response.json()
        self.credentials.access_token = pair["access_token"]
        self.credentials.refresh_token = pair["refresh_token"]
        self.credentials.expires_at = time.time() + pair["expires_in"]
        config.save(self.credentials)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        response = self.http.request(method, path, headers=headers, **kwargs)
        _raise_for(response)
        return response.json() if response.content else None

    def logout(self) -> None:
        self.request("POST", "/api/v1/auth/logout",
                     json={"refresh_token": self.credentials.refresh_token})  # fmt: skip

    def follow(
        self,
        websocket_url: str,
        *,
        on_reconnect: Callable[[int, str], None] | None = None,
        max_reconnects: int = 20,
    ) -> Iterator[dict[str, Any]]:
        """Yield the command's events until its terminal status, resuming after drops."""
        since = 0
        attempts = 0
        while True:
            # The token travels in Sec-WebSocket-Protocol, never in the URL (access logs).
            offered = [SUBPROTOCOL, f"{BEARER_PREFIX}{self.token()}"]
            try:
                with connect(
                    f"{websocket_url}?since={since}",
                    subprotocols=offered,  # type: ignore[arg-type] # plain names
                    open_timeout=10,
                    close_timeout=2,
                ) as socket:
                    attempts = 0
                    for raw in socket:
                        event = json.loads(raw)
                        if "seq" not in event:
                            continue  # connection-level messages (welcome, pong, ...)
                        since = max(since, int(event["seq"]))
                        yield event
                        if (
                            event.get("event") == "status"
                            and event.get("status") in TERMINAL_STATUSES
                        ):
                            return
                    code, reason = socket.close_code or 1006, socket.close_reason or ""
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else 1006
                reason = closed.rcvd.reason if closed.rcvd else "connection lost"
            except (InvalidStatus, InvalidHandshake, OSError) as exc:
                code, reason = 1006, str(exc)
            if code == CloseCode.TOKEN_EXPIRED:
                self.refresh()
            elif not should_reconnect(code):
                raise ApiError(code, "stream_closed", f"Stream closed: {code} {reason}".strip())
            attempts += 1
            if attempts > max_reconnects:
                raise ApiError(code, "stream_closed", f"Gave up reconnecting: {code} {reason}")
            if on_reconnect is not None:
                on_reconnect(code, reason)
            time.sleep(min(0.2 * 2**attempts, 5.0))  # back-off before reconnecting
