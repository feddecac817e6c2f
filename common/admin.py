"""``sovd-admin``: create users and seed demo data."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from common import mqtt_admin
from common.fleet import DEMO_USERS, seed_demo
from common.keys import Keys
from common.redis_client import async_client
from common.settings import Settings, get_settings
from common.users import Role, UserExistsError, UserStore

__all__ = ["main"]


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


def main(argv: list[str] | None = None) -> int:
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
    sub.add_parser("seed-demo", help="create the demo users and fleet if missing")
    sub.add_parser("demo-logins", help="print the demo logins (no server needed)")
    mqtt_admin.add_parser(sub)
    args = parser.parse_args(argv)
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
