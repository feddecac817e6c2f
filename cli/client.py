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
    needs_new_token,
    should_reconnect,
)

__all__ = ["TERMINAL_STATUSES", "ApiError", "Client", "Unreachable", "normalize_api_url"]

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


class Unreachable(Exception):
    """Nothing answered at ``url``; ``reason`` is what the connection attempt said."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the service at {url}: {reason}")
        self.url = url
        self.reason = reason


def normalize_api_url(url: str) -> str:
    """``url`` with a scheme (``http://`` when none is given) and no trailing slash."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ApiError(0, "usage", f"Not an http(s) URL: {url!r} (e.g. http://127.0.0.1:8000)")
    return url


def _not_the_api(response: httpx.Response) -> ApiError:
    root = str(response.request.url.copy_with(path="/", query=None)).rstrip("/")
    reason = f"{response.status_code} {response.reason_phrase}".strip()
    return ApiError(
        response.status_code,
        "not_the_api",
        f"{root} answered {reason} for {response.request.url.path}: it is not the SOVD api; "
        "check the api URL (the api listens on port 8000 by default, 8001 is the realtime "
        "service)",
    )


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        raise _not_the_api(response) from None  # another server answered (a proxy, ...)
    if response.status_code == 404 and message == "Not Found":
        # No such route at all (the api names what it did not find): the realtime port,
        # or a server of another version.
        raise _not_the_api(response)
    raise ApiError(response.status_code, code, message, error.get("details"))


def _send(http: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise Unreachable(str(http.base_url).rstrip("/"), str(exc) or type(exc).__name__) from exc


class Client:
    def __init__(self, credentials: config.Credentials) -> None:
        self.credentials = credentials
        self.http = httpx.Client(base_url=credentials.api_url, timeout=15)

    @classmethod
    def login(cls, api_url: str, username: str, password: str) -> Client:
        with httpx.Client(base_url=api_url, timeout=15) as http:
            response = _send(
                http,
                "POST",
                "/api/v1/auth/login",
                json={"username": username, "password": password},
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
        response = _send(
            self.http,
            "POST",
            "/api/v1/auth/refresh",
            json={"refresh_token": self.credentials.refresh_token},
        )
        _raise_for(response)
        pair = response.json()
        self.credentials.access_token = pair["access_token"]
        self.credentials.refresh_token = pair["refresh_token"]
        self.credentials.expires_at = time.time() + pair["expires_in"]
        config.save(self.credentials)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        response = _send(self.http, method, path, headers=headers, **kwargs)
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
        """Yield the command's events until its terminal status, resuming after drops.
        A snapshot (the log expired) restates the stored command: its marker is yielded,
        and of its responses only those not yielded before."""
        since = 0
        attempts = 0
        parts: set[int] = set()  # sequence numbers of the responses yielded
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
                    for raw in socket:
                        event = json.loads(raw)
                        if event.get("event") == "welcome":
                            # Admitted (the server accepts first, then admits or
                            # refuses): only now has a reconnect succeeded.
                            attempts = 0
                            continue
                        if event.get("event") == "snapshot":
                            yield event  # the stored state follows, not the original events
                            continue
                        if "seq" not in event:
                            continue  # connection-level messages (welcome, pong, ...)
                        since = max(since, int(event["seq"]))
                        if event.get("event") == "response":
                            number = event.get("sequence_number")
                            if event.get("snapshot") is True and number in parts:
                                continue  # shown already, before the log expired
                            parts.add(number)
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
            if needs_new_token(code, reason):
                self.refresh()
            elif not should_reconnect(code):
                raise ApiError(code, "stream_closed", f"Stream closed: {code} {reason}".strip())
            attempts += 1
            if attempts > max_reconnects:
                raise ApiError(code, "stream_closed", f"Gave up reconnecting: {code} {reason}")
            if on_reconnect is not None:
                on_reconnect(code, reason)
            time.sleep(min(0.2 * 2**attempts, 5.0))  # back-off before reconnecting
