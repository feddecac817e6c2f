"""``sovd-admin mqtt-credentials``: the broker's password file and ACL, a car's password."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from common.mqtt_auth import (
    acl_text,
    registered_vehicles,
    vehicle_password,
    vehicle_secret,
    write_password_file,
)
from common.settings import Settings
from common.vin import is_valid_vin

__all__ = ["add_parser", "mqtt_credentials"]


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "mqtt-credentials",
        help="write Mosquitto's password file and ACL for the registered vehicles",
        description="One broker account per vehicle (username: its VIN) and one for the "
        "service; passwords derive from SOVD_MQTT_VEHICLE_SECRET. Send the broker a SIGHUP "
        "after rewriting its files.",
    )
    parser.add_argument("--password-file", type=Path, help="write the password file here")
    parser.add_argument("--acl-file", type=Path, help="write the ACL here")
    parser.add_argument("--vin", action="append", default=[],
                        help="an account for this VIN too (repeatable)")  # fmt: skip
    parser.add_argument("--no-registry", action="store_true",
                        help="only the --vin accounts, without reading the registry")  # fmt: skip
    parser.add_argument("--show", metavar="VIN", help="print this vehicle's broker password")


def mqtt_credentials(settings: Settings, args: argparse.Namespace) -> int:
    extra = [vin.upper() for vin in args.vin]
    bad = [
        vin for vin in extra + ([args.show.upper()] if args.show else []) if not is_valid_vin(vin)
    ]
    if bad:
        print(f"error: not a valid VIN: {', '.join(bad)}", file=sys.stderr)
        return 2
    if args.show:
        print(vehicle_password(vehicle_secret(settings), args.show.upper()))
        return 0
    if not args.password_file and not args.acl_file:
        print("error: give --password-file, --acl-file or --show", file=sys.stderr)
        return 2
    if args.password_file:
        vins = extra if args.no_registry else extra + [v.vin for v in registered_vehicles(settings)]
        count = write_password_file(args.password_file, settings, vins)
        print(f"wrote {args.password_file}: {settings.mqtt_username} and {count} vehicles")
    if args.acl_file:
        args.acl_file.parent.mkdir(parents=True, exist_ok=True)
        args.acl_file.write_text(acl_text(settings))
        print(f"wrote {args.acl_file}")
    return 0
