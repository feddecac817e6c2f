"""Regenerate the gRPC code of proto/sovd/vehicle/v1/vehicle.proto into workers/grpc_gen/.

    python scripts/gen_grpc.py           # write the generated modules
    python scripts/gen_grpc.py --check   # exit 1 when the committed modules differ

grpcio-tools (the ``grpc`` dependency group, pinned there) runs protoc and its gRPC
plugin. protoc names the generated package after the proto's path (``sovd.vehicle.v1``);
the modules live in ``workers.grpc_gen``, so that import is rewritten. The descriptor
keeps the proto's own file name, which is what the gateways see.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PROTO = "sovd/vehicle/v1/vehicle.proto"
OUT = ROOT / "workers" / "grpc_gen"
PACKAGE = "workers.grpc_gen"

#: Generated file -> the text protoc writes and what it becomes (each must occur).
REWRITES = {
    "vehicle_pb2.py": [
        ("'sovd.vehicle.v1.vehicle_pb2'", f"'{PACKAGE}.vehicle_pb2'"),
    ],
    "vehicle_pb2_grpc.py": [
        ("from sovd.vehicle.v1 import vehicle_pb2", f"from {PACKAGE} import vehicle_pb2"),
    ],
    "vehicle_pb2.pyi": [],
}


def generate() -> dict[str, str]:
    """The generated modules, by file name, as they belong in ``workers/grpc_gen``."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            PROTO,
        ]
        if protoc.main(argv) != 0:
            raise SystemExit("protoc failed")
        produced = Path(tmp) / Path(PROTO).parent
        modules: dict[str, str] = {}
        for name, rewrites in REWRITES.items():
            text = (produced / name).read_text()
            for old, new in rewrites:
                if old not in text:
                    raise SystemExit(f"{name}: expected {old!r} in protoc's output")
                text = text.replace(old, new)
            modules[name] = text
    return modules


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    modules = generate()
    stale = [
        n for n, text in modules.items() if not (OUT / n).is_file() or (OUT / n).read_text() != text
    ]
    if args.check:
        for name in stale:
            print(f"workers/grpc_gen/{name} differs from a fresh generation", file=sys.stderr)
        if stale:
            print("run: python scripts/gen_grpc.py", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in modules.items():
        (OUT / name).write_text(text)
    print(f"wrote {', '.join(sorted(modules))} to workers/grpc_gen/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
