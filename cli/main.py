"""``sovd``: log in, list vehicles, run diagnostic commands and follow them live.

Exit codes: 0 completed, 1 failed, 3 timeout, 4 cancelled, 5 rejected (the command's
terminal status); 2 for a refused request or bad usage; 6 when the service cannot be
reached; 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata

from cli import commands
from cli.client import ApiError, Unreachable
from cli.commands import EXIT_INTERRUPTED, EXIT_REFUSED, EXIT_UNREACHABLE, print_json

__all__ = ["DEFAULT_API_URL", "build_parser", "main"]

DEFAULT_API_URL = "http://127.0.0.1:8000"


def _version() -> str:
    try:
        return metadata.version("sovd-command-service")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; ``--json`` is accepted before or after the subcommand."""
    parser = argparse.ArgumentParser(
        prog="sovd", description=(__doc__ or "").splitlines()[0].replace("``", "")
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--version", action="version", version=f"sovd {_version()}")
    # The same option on every subcommand; SUPPRESS keeps the top-level value when absent.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, handler: object) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        command.set_defaults(handler=handler)
        return command

    login = add("login", "log in and keep the tokens for later commands", commands.cmd_login)
    login.add_argument(
        "--api-url",
        default=os.environ.get("SOVD_API_URL", DEFAULT_API_URL),
        help=f"the api's URL (default: $SOVD_API_URL or {DEFAULT_API_URL}); "
        "http:// is assumed when no scheme is given",
    )
    login.add_argument("--username")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    add("logout", "revoke the tokens and forget them", commands.cmd_logout)
    add("whoami", "the logged-in user, role and api URL", commands.cmd_whoami)

    vehicles = add("vehicles", "list the fleet, with each vehicle's ECUs", commands.cmd_vehicles)
    vehicles.add_argument("--status", choices=["connected", "disconnected"])
    vehicles.add_argument("--search", help="VIN fragment")

    add("types", "the command types with their parameters", commands.cmd_types)

    run = add("run", "submit a command to a vehicle", commands.cmd_run)
    run.add_argument("vehicle", help="vehicle id, VIN or unique VIN fragment")
    run.add_argument("command_type", help="ReadDTC, ClearDTC, ReadDataByID (see `sovd types`)")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    run.add_argument("--follow", action="store_true", help="stream the events until the end")
    run.add_argument("--idempotency-key")

    watch = add("watch", "follow a command's events live", commands.cmd_watch)
    watch.add_argument("command_id")

    show = add("show", "one command: its status, attempts and responses", commands.cmd_show)
    show.add_argument("command_id")

    cancel = add("cancel", "cancel a pending or running command", commands.cmd_cancel)
    cancel.add_argument("command_id")

    history = add("history", "recent commands", commands.cmd_history)
    history.add_argument("--status")
    history.add_argument("--vehicle", help="vehicle id, VIN or unique VIN fragment")
    history.add_argument("--limit", type=int, default=20)
    return parser


def _message(exc: ApiError) -> str:
    """The service's message, with the invalid fields of a 422 named, never raw JSON."""
    details = exc.details if isinstance(exc.details, dict) else {}
    problems = [
        f"{'.'.join(str(p) for p in error.get('loc', [])[1:]) or 'request'}: {error.get('msg')}"
        for error in details.get("errors", [])
        if isinstance(error, dict)
    ]
    if problems and not all(p.split(": ", 1)[1] in exc.message for p in problems):
        return f"{exc.message} ({'; '.join(problems)})"
    return exc.message


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ApiError as exc:
        if args.json:
            print_json({"event": "error", "code": exc.code, "message": exc.message,
                        "details": exc.details})  # fmt: skip
        print(f"error: {_message(exc)}", file=sys.stderr)
        return EXIT_REFUSED
    except Unreachable as exc:
        if args.json:
            print_json({"event": "error", "code": "unreachable", "message": str(exc)})
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
