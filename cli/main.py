"""``sovd``: log in, list vehicles, run diagnostic commands and follow them live.

Exit codes: 0 completed, 1 failed, 3 timeout, 4 cancelled, 5 rejected (the command's
terminal status); 2 for a refused request or bad usage; 6 when the service cannot be
reached.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import uuid
from typing import Any

import httpx2 as httpx

from cli import config
from cli.client import ApiError, Client
from cli.render import render_event

__all__ = ["main"]

EXIT_CODES = {"completed": 0, "failed": 1, "timeout": 3, "cancelled": 4, "rejected": 5}
EXIT_REFUSED = 2
EXIT_UNREACHABLE = 6
DEFAULT_API_URL = "http://127.0.0.1:8000"


def _print_json(value: Any) -> None:
    print(json.dumps(value, separators=(",", ":")), flush=True)


def _client() -> Client:
    credentials = config.load()
    if credentials is None:
        raise ApiError(401, "unauthorized", "Not logged in: run `sovd login` first")
    return Client(credentials)


def _params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ApiError(0, "usage", f"--param expects name=value, got {pair!r}")
        params[name] = value
    return params


def _vehicle_id(client: Client, ref: str) -> str:
    """A vehicle id from a UUID, a full VIN or a unique VIN fragment."""
    try:
        return str(uuid.UUID(ref))
    except ValueError:
        pass
    matches = client.request("GET", "/api/v1/vehicles", params={"search": ref, "limit": 500})
    exact = [v for v in matches if v["vin"] == ref.upper()]
    if len(exact) == 1 or len(matches) == 1:
        return str((exact or matches)[0]["vehicle_id"])
    if not matches:
        raise ApiError(404, "not_found", f"No vehicle matches {ref!r}")
    vins = ", ".join(v["vin"] for v in matches)
    raise ApiError(0, "usage", f"{ref!r} matches several vehicles: {vins}")


def _follow(client: Client, websocket_url: str, *, as_json: bool) -> int:
    def on_reconnect(code: int, reason: str) -> None:
        print(f"(stream dropped: {code} {reason}; resuming)", file=sys.stderr, flush=True)

    status = "failed"
    for event in client.follow(websocket_url, on_reconnect=on_reconnect):
        if as_json:
            _print_json(event)
        else:
            print(render_event(event), flush=True)
        if event.get("event") == "status":
            status = str(event["status"])
    return EXIT_CODES.get(status, 1)


def cmd_login(args: argparse.Namespace) -> int:
    username = args.username or input("Username: ")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
    client = Client.login(args.api_url, username, password)
    client.close()
    print(f"Logged in to {args.api_url} as {username} (credentials in {config.config_dir()})")
    return 0


def cmd_logout(_args: argparse.Namespace) -> int:
    client = _client()
    try:
        client.logout()
    finally:
        client.close()
        config.remove()
    print("Logged out")
    return 0


def cmd_vehicles(args: argparse.Namespace) -> int:
    client = _client()
    params = {k: v for k, v in {"status": args.status, "search": args.search}.items() if v}
    vehicles = client.request("GET", "/api/v1/vehicles", params=params)
    if args.json:
        for vehicle in vehicles:
            _print_json(vehicle)
        return 0
    for v in vehicles:
        seen = v["last_seen_at"] or "never"
        print(f"{v['vin']}  {v['connection_status']:<12}  {v['year']} {v['make']} {v['model']:<10}"
              f"  last seen {seen}  {v['vehicle_id']}")  # fmt: skip
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    client = _client()
    body = {
        "vehicle_id": _vehicle_id(client, args.vehicle),
        "command_name": args.command_type,
        "command_params": _params(args.param),
    }
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    command = client.request("POST", "/api/v1/commands", json=body, headers=headers)
    if args.json:
        _print_json({"event": "submitted", **command})
    else:
        print(f"Submitted {command['command_name']} {command['command_id']}", flush=True)
    if not args.follow:
        return 0
    return _follow(client, command["websocket_url"], as_json=args.json)


def cmd_watch(args: argparse.Namespace) -> int:
    client = _client()
    command = client.request("GET", f"/api/v1/commands/{args.command_id}")
    return _follow(client, command["websocket_url"], as_json=args.json)


def cmd_history(args: argparse.Namespace) -> int:
    client = _client()
    params = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    if args.vehicle:
        params["vehicle_id"] = _vehicle_id(client, args.vehicle)
    page = client.request("GET", "/api/v1/commands", params=params)
    if args.json:
        for command in page["commands"]:
            _print_json(command)
        return 0
    for c in page["commands"]:
        params_text = " ".join(f"{k}={v}" for k, v in c["command_params"].items())
        print(f"{c['submitted_at']}  {c['status']:<11}  {c['command_name']:<13} {params_text:<30}"
              f"  {c['command_id']}")  # fmt: skip
    print(f"({len(page['commands'])} of {page['total']})")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sovd", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)

    login = sub.add_parser("login", help="log in and keep the tokens for later commands")
    login.add_argument("--api-url", default=os.environ.get("SOVD_API_URL", DEFAULT_API_URL))
    login.add_argument("--username")
    login.add_argument("--password-stdin", action="store_true")
    login.set_defaults(handler=cmd_login)

    sub.add_parser("logout", help="revoke the tokens and forget them").set_defaults(
        handler=cmd_logout
    )

    vehicles = sub.add_parser("vehicles", help="list the fleet")
    vehicles.add_argument("--status", choices=["connected", "disconnected"])
    vehicles.add_argument("--search", help="VIN fragment")
    vehicles.set_defaults(handler=cmd_vehicles)

    run = sub.add_parser("run", help="submit a command to a vehicle")
    run.add_argument("vehicle", help="vehicle id, VIN or unique VIN fragment")
    run.add_argument("command_type", help="ReadDTC, ClearDTC, ReadDataByID, ...")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    run.add_argument("--follow", action="store_true", help="stream the events until the end")
    run.add_argument("--idempotency-key")
    run.set_defaults(handler=cmd_run)

    watch = sub.add_parser("watch", help="follow a command's events live")
    watch.add_argument("command_id")
    watch.set_defaults(handler=cmd_watch)

    history = sub.add_parser("history", help="recent commands")
    history.add_argument("--status")
    history.add_argument("--vehicle")
    history.add_argument("--limit", type=int, default=20)
    history.set_defaults(handler=cmd_history)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ApiError as exc:
        if args.json:
            _print_json({"event": "error", "code": exc.code, "message": exc.message,
                         "details": exc.details})  # fmt: skip
        details = f" {json.dumps(exc.details)}" if exc.details else ""
        print(f"error: {exc.message}{details}", file=sys.stderr)
        return EXIT_REFUSED
    except (httpx.TransportError, OSError) as exc:
        print(f"error: cannot reach the service: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
