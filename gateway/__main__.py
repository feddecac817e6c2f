"""Gateway entry point: ``python -m gateway`` serves the simulated fleet over gRPC.

It reports the presence of the simulated vehicles it hosts (``gateway.presence``).
``--procfile`` (the Procfile's ``gateway`` entry) serves only when the workers use it
(``SOVD_CONNECTOR=grpc`` and ``SOVD_GRPC_LOCAL_GATEWAY``); otherwise it stays idle, since
honcho stops every process when one exits.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

import structlog

from common.logging import configure_logging
from common.redis_client import wait_for_redis
from common.settings import get_settings
from gateway.presence import HostedPresence
from gateway.server import build_gateway

#: Time calls in progress get to finish on SIGTERM before they are cancelled.
SHUTDOWN_GRACE_S = 3.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    parser.add_argument("--procfile", action="store_true", help="idle unless SOVD_CONNECTOR=grpc")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings, "gateway")
    log = structlog.get_logger("gateway")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.procfile and not (settings.connector == "grpc" and settings.grpc_local_gateway):
        log.info("gateway_idle", reason="SOVD_CONNECTOR is not grpc")
        stop.wait()
        return
    wait_for_redis(settings.effective_redis_url)
    gateway = build_gateway(settings)
    gateway.server.start()
    presence = HostedPresence(settings)
    presence.start()
    log.info(
        "gateway_listening",
        host=settings.grpc_gateway_host,
        port=gateway.port,
        vehicles=len(presence.reported),
    )
    stop.wait()
    log.info("gateway_stopping", grace_s=SHUTDOWN_GRACE_S)
    presence.stop()  # its vehicles go offline first: their running commands end cleanly
    gateway.server.stop(SHUTDOWN_GRACE_S).wait()
    gateway.close()


if __name__ == "__main__":
    main()
