"""``sovd-admin``: create users, import and export the fleet, seed demo data."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path
from typing import cast

from common import mqtt_admin
from common.audit import AsyncAuditLog
from common.fleet import DEMO_USERS, seed_demo
from common.fleet_io import Format, ImportReport, dump_fleet, import_fleet
from common.keys import Keys
from common.redis_client import async_client
from common.registry import Registry
from common.settings import Settings, get_settings
from common.users import Role, UserExistsError, UserStore
from common.vehicles import Vehicle, VehicleStore

__all__ = ["build_parser", "main"]


async def _create_user(settings: Settings, args: argparse.Namespace, password: str) -> str:
    client = async_client(settings.effective_redis_url)
    try:
        user = await UserStore(client, Keys(settings.key_prefix)).create(
            username=args.username,
            password=password,
            role=Role(args.role),
            email=args.email,
            active=not args.inactive,
            replace=args.replace,
        )
    finally:
        await client.aclose()
    return user.user_id


async def _seed(settings: Settings) -> list[str]:
    client = async_client(settings.effective_redis_url)
    try:
        return await seed_demo(client, Keys(settings.key_prefix))
    finally:
        await client.aclose()


async def _set_active(settings: Settings, username: str, active: bool) -> bool:
    client = async_client(settings.effective_redis_url)
    try:
        users = UserStore(client, Keys(settings.key_prefix))
        return await users.set_active(username, active) is not None
    finally:
        await client.aclose()


#: Who the audit trail names for changes made from the command line.
CLI_ACTOR = "sovd-admin"


async def _import(settings: Settings, text: str, fmt: Format, dry_run: bool) -> ImportReport:
    client = async_client(settings.effective_redis_url)
    try:
        keys = Keys(settings.key_prefix)
        vehicles = VehicleStore(client, keys)
        registry = Registry(vehicles, AsyncAuditLog(client, keys, settings))
        return await import_fleet(
            text, fmt, vehicles=vehicles, registry=registry, dry_run=dry_run,
            username=CLI_ACTOR,
        )  # fmt: skip
    finally:
        await client.aclose()


async def _export(settings: Settings) -> list[Vehicle]:
    client = async_client(settings.effective_redis_url)
    try:
        store = VehicleStore(client, Keys(settings.key_prefix))
        fleet: list[Vehicle] = []
        while page := await store.list_vehicles(limit=1000, offset=len(fleet)):
            fleet.extend(page)
        return fleet
    finally:
        await client.aclose()


def _format_of(args: argparse.Namespace, path: str) -> Format:
    if args.format:
        return cast(Format, args.format)
    return "json" if path.lower().endswith(".json") else "csv"


def _run_import(settings: Settings, args: argparse.Namespace) -> int:
    fmt = _format_of(args, args.file)
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_import(settings, text, fmt, args.dry_run))
    except ValueError as exc:  # the file as a whole (bad JSON, CSV header, too many rows)
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    for refusal in report.refused:
        vin = f" ({refusal.vin})" if refusal.vin else ""
        print(f"refused row {refusal.row}{vin}: {refusal.reason}", file=sys.stderr)
    prefix = "dry run, nothing written: " if args.dry_run else ""
    print(prefix + report.summary())
    return 1 if report.refused else 0


def _run_export(settings: Settings, args: argparse.Namespace) -> int:
    path = args.output or "-"
    fmt = _format_of(args, path)
    fleet = asyncio.run(_export(settings))
    text = dump_fleet(fleet, fmt)
    if path == "-":
        sys.stdout.write(text)
    else:
        Path(path).write_text(text, "utf-8")
        print(f"exported {len(fleet)} vehicles to {path}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``sovd-admin`` command line."""
    parser = argparse.ArgumentParser(prog="sovd-admin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-user", help="create a user (password read from stdin)")
    create.add_argument("username")
    create.add_argument("--role", choices=[r.value for r in Role], required=True)
    create.add_argument("--email")
    create.add_argument("--inactive", action="store_true", help="create the user disabled")
    create.add_argument("--replace", action="store_true", help="reset an existing user")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    for verb in ("deactivate-user", "activate-user"):
        toggle = sub.add_parser(
            verb, help=f"{verb.split('-')[0]} a user (a deactivation closes its open streams)"
        )
        toggle.add_argument("username")
    importing = sub.add_parser(
        "import-fleet",
        help="register or update vehicles from a CSV or JSON file, idempotent on VIN "
        "(refused rows are reported; exit 1 when any)",
    )
    importing.add_argument("file", help="the fleet file, or - for standard input")
    importing.add_argument("--format", choices=["csv", "json"], help="default: by extension")
    importing.add_argument("--dry-run", action="store_true", help="validate and report only")
    exporting = sub.add_parser("export-fleet", help="write the fleet as CSV or JSON")
    exporting.add_argument("-o", "--output", help="file to write (default: standard output)")
    exporting.add_argument("--format", choices=["csv", "json"], help="default: by extension")
    sub.add_parser("seed-demo", help="create the demo users and fleet if missing")
    sub.add_parser("demo-logins", help="print the demo logins (no server needed)")
    mqtt_admin.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo-logins":
        _print_demo_logins()
        return 0
    settings = get_settings()
    if args.command == "mqtt-credentials":
        return mqtt_admin.mqtt_credentials(settings, args)

    if args.command == "create-user":
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("Password: ")
        if len(password) < 8:
            print("error: the password must have at least 8 characters", file=sys.stderr)
            return 2
        try:
            user_id = asyncio.run(_create_user(settings, args, password))
        except UserExistsError:
            print(f"error: user {args.username!r} exists (use --replace)", file=sys.stderr)
            return 1
        print(f"created {args.username} ({args.role}) user_id={user_id}")
        return 0

    if args.command == "import-fleet":
        return _run_import(settings, args)
    if args.command == "export-fleet":
        return _run_export(settings, args)

    if args.command in ("deactivate-user", "activate-user"):
        active = args.command == "activate-user"
        if not asyncio.run(_set_active(settings, args.username, active)):
            print(f"error: no user {args.username!r}", file=sys.stderr)
            return 1
        print(f"{args.username} {'activated' if active else 'deactivated'}")
        return 0

    if settings.env != "dev":
        print("error: demo users have public passwords; seed-demo runs only with SOVD_ENV=dev",
              file=sys.stderr)  # fmt: skip
        return 2
    created = asyncio.run(_seed(settings))
    print("demo users created: " + (", ".join(created) or "none (already present)"))
    _print_demo_logins()
    return 0


def _print_demo_logins() -> None:
    print("Demo logins (development only):")
    for username, password, role, _ in DEMO_USERS:
        print(f"  {role.value:<9} username={username:<9} password={password}")


if __name__ == "__main__":
    sys.exit(main())
