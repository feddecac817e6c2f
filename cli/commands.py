"""The ``sovd`` subcommands: each takes the parsed arguments and returns the exit code."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import uuid
from typing import Any

from cli import config
from cli.client import ApiError, Client, normalize_api_url
from cli.render import render_event
from cli.tables import table

__all__ = [
    "EXIT_CODES",
    "EXIT_INTERRUPTED",
    "EXIT_REFUSED",
    "EXIT_UNREACHABLE",
    "cmd_cancel",
    "cmd_history",
    "cmd_login",
    "cmd_logout",
    "cmd_run",
    "cmd_show",
    "cmd_types",
    "cmd_vehicles",
    "cmd_watch",
    "cmd_whoami",
]

EXIT_CODES = {"completed": 0, "failed": 1, "timeout": 3, "cancelled": 4, "rejected": 5}
EXIT_REFUSED = 2
EXIT_UNREACHABLE = 6
EXIT_INTERRUPTED = 130


def print_json(value: Any) -> None:
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


def _vins(client: Client) -> dict[str, str]:
    """Vehicle id -> VIN for the whole fleet the caller may see."""
    return {v["vehicle_id"]: v["vin"] for v in client.request(
        "GET", "/api/v1/vehicles", params={"limit": 500})}  # fmt: skip


def _follow(client: Client, command_id: str, websocket_url: str, *, as_json: bool) -> int:
    def on_reconnect(code: int, reason: str) -> None:
        print(f"(stream dropped: {code} {reason}; resuming)", file=sys.stderr, flush=True)

    status = "failed"
    try:
        for event in client.follow(websocket_url, on_reconnect=on_reconnect):
            if as_json:
                print_json(event)
            else:
                print(render_event(event), flush=True)
            if event.get("event") == "status":
                status = str(event["status"])
    except KeyboardInterrupt:
        return _interrupted(command_id)
    return EXIT_CODES.get(status, 1)


def _interrupted(command_id: str) -> int:
    """Ctrl-C while following: the command is not affected; say how to watch it again."""
    print(f"Stopped following. Command {command_id} keeps running; watch it again "
          f"with: sovd watch {command_id}", file=sys.stderr, flush=True)  # fmt: skip
    return EXIT_INTERRUPTED


def cmd_login(args: argparse.Namespace) -> int:
    api_url = normalize_api_url(args.api_url)
    username = args.username or input("Username: ")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
    client = Client.login(api_url, username, password)
    client.close()
    print(f"Logged in to {api_url} as {username} (credentials in {config.config_dir()})")
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


def cmd_whoami(args: argparse.Namespace) -> int:
    client = _client()
    me = client.request("GET", "/api/v1/auth/me")
    if args.json:
        print_json({**me, "api_url": client.credentials.api_url})
        return 0
    print(f"{me['username']} ({me['role']}) at {client.credentials.api_url}")
    return 0


def cmd_vehicles(args: argparse.Namespace) -> int:
    client = _client()
    params = {k: v for k, v in {"status": args.status, "search": args.search}.items() if v}
    vehicles = client.request("GET", "/api/v1/vehicles", params=params)
    if args.json:
        for vehicle in vehicles:
            print_json(vehicle)
        return 0
    rows = [
        (
            v["vin"],
            v["connection_status"],
            f"{v['year']} {v['make']} {v['model']}",
            " ".join(e["address"] for e in v["metadata"].get("ecus", [])),
            v["last_seen_at"] or "never",
            v["vehicle_id"],
        )
        for v in vehicles
    ]
    print(table(("VIN", "STATUS", "VEHICLE", "ECUS", "LAST SEEN", "ID"), rows))
    return 0


def cmd_types(args: argparse.Namespace) -> int:
    client = _client()
    types = client.request("GET", "/api/v1/command-types")
    if args.json:
        for command_type in types:
            print_json(command_type)
        return 0
    for index, t in enumerate(types):
        if index:
            print()
        destructive = "  (destructive)" if t["destructive"] else ""
        print(f"{t['name']}{destructive}: {t['description']}")
        schema = t["parameters"]
        required = set(schema.get("required", []))
        for name, spec in schema.get("properties", {}).items():
            need = "required" if name in required else "optional"
            print(f"  --param {name}=...  {need}: {spec.get('description', '')}".rstrip())
        roles = ", ".join(t["roles_allowed"])
        print(f"  timeout {t['timeout_ms'] / 1000:g} s, up to {t['retry']['max_retries']} "
              f"retries, roles: {roles}")  # fmt: skip
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    client = _client()
    body = {
        "vehicle_id": _vehicle_id(client, args.vehicle),
        "command_name": args.command_type,
        "command_params": _params(args.param),
    }
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    try:
        command = client.request("POST", "/api/v1/commands", json=body, headers=headers)
    except ApiError as exc:
        rejected = _rejected_command(client, exc)
        if rejected is None:
            raise
        if args.json:
            print_json({"event": "rejected", **rejected})
        print(f"Rejected: {rejected.get('error_message') or exc.message}. "
              f"Command {rejected['command_id']} is recorded as rejected.",
              file=sys.stderr)  # fmt: skip
        return EXIT_CODES["rejected"]
    try:
        if args.json:
            print_json({"event": "submitted", **command})
        else:
            print(f"Submitted {command['command_name']} {command['command_id']}", flush=True)
        if not args.follow:
            return 0
        return _follow(client, command["command_id"], command["websocket_url"], as_json=args.json)
    except KeyboardInterrupt:  # between the submission and the first event
        return _interrupted(command["command_id"])


def _rejected_command(client: Client, exc: ApiError) -> dict[str, Any] | None:
    """The command a 409 refers to, when the service recorded it as rejected."""
    details = exc.details if isinstance(exc.details, dict) else {}
    command_id = details.get("command_id")
    if exc.status != 409 or not command_id:
        return None
    command: dict[str, Any] = client.request("GET", f"/api/v1/commands/{command_id}")
    return command if command.get("status") == "rejected" else None


def cmd_watch(args: argparse.Namespace) -> int:
    client = _client()
    command = client.request("GET", f"/api/v1/commands/{args.command_id}")
    return _follow(client, command["command_id"], command["websocket_url"], as_json=args.json)


def cmd_show(args: argparse.Namespace) -> int:
    client = _client()
    command = client.request("GET", f"/api/v1/commands/{args.command_id}")
    responses = client.request("GET", f"/api/v1/commands/{args.command_id}/responses")
    if args.json:
        print_json({**command, "responses": responses})
        return 0
    vin = _vins(client).get(command["vehicle_id"], command["vehicle_id"])
    params = " ".join(f"{k}={v}" for k, v in command["command_params"].items())
    fields = [
        ("command", f"{command['command_name']} {params}".strip()),
        ("id", command["command_id"]),
        ("vehicle", vin),
        ("status", command["status"]),
        ("error", command.get("error_message") or ""),
        ("attempts", command.get("attempts", 0)),
        ("submitted", command["submitted_at"]),
        ("started", command.get("started_at") or ""),
        ("completed", command.get("completed_at") or ""),
    ]
    print(table(("FIELD", "VALUE"), [f for f in fields if f[1] != ""]))
    for response in responses:
        event = {"event": "response", "seq": response["sequence_number"],
                 "sequence_number": response["sequence_number"], "response": response}  # fmt: skip
        print(render_event(event))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    client = _client()
    command = client.request("POST", f"/api/v1/commands/{args.command_id}/cancel")
    if args.json:
        print_json(command)
        return 0
    if command["status"] == "cancelled":
        print(f"Cancelled {command['command_id']}")
    else:
        print(f"Cancel requested for {command['command_id']}: the vehicle stops at its next "
              f"step (follow it with: sovd watch {command['command_id']})")  # fmt: skip
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    client = _client()
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    if args.vehicle:
        params["vehicle_id"] = _vehicle_id(client, args.vehicle)
    page = client.request("GET", "/api/v1/commands", params=params)
    if args.json:
        for command in page["commands"]:
            print_json(command)
        return 0
    vins = _vins(client)
    rows = [
        (
            c["submitted_at"],
            c["status"],
            vins.get(c["vehicle_id"], c["vehicle_id"]),
            c["command_name"],
            " ".join(f"{k}={v}" for k, v in c["command_params"].items()),
            c["command_id"],
        )
        for c in page["commands"]
    ]
    print(table(("SUBMITTED", "STATUS", "VEHICLE", "COMMAND", "PARAMETERS", "ID"), rows))
    print(f"({len(page['commands'])} of {page['total']})")
    return 0
