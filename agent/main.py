"""``python -m agent``: vehicles as MQTT clients, answered by a backend (the simulator).

    python -m agent                      # the simulated fleet of the registry (vehicles
                                         # with metadata "simulated": true), as it changes
    python -m agent --vin WVWZZZ1KZMW123456 --vin ...
    python -m agent --fleet fleet.json   # vehicles from a file (a JSON list of vehicles)
    python -m agent --vin VIN --password-file /etc/sovd/mqtt-password \\
        --backend agent.example_backend:build     # one car's own software

Stays idle (for the Procfile) unless ``SOVD_CONNECTOR=mqtt``. SIGTERM or SIGINT stop
every vehicle cleanly (retained ``offline``/``clean_disconnect``); a kill leaves the
broker to publish each vehicle's last will.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

import structlog

from agent.backend import load_factory
from agent.io_loop import ClientLoop
from agent.vehicle import SimulatedVehicle
from common.fleet import is_simulated
from common.logging import configure_logging
from common.mqtt_auth import registered_vehicles, vehicle_password, vehicle_secret
from common.redis_client import wait_for_redis
from common.settings import Settings, get_settings
from common.vehicles import Vehicle

__all__ = ["Agent", "main"]

log = structlog.get_logger(__name__)

#: How often the agent looks for vehicles added to or removed from the registry.
REGISTRY_POLL_S = 5.0


class Agent:
    """The vehicles of one process: start, heartbeat, follow the registry, stop."""

    def __init__(
        self,
        settings: Settings,
        *,
        backend_spec: str = "agent.backend:simulator",
        pool_size: int = 64,
        password: str | None = None,
    ) -> None:
        self._settings = settings
        self._backend = load_factory(backend_spec)(settings)
        self._pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="exchange")
        self._loop = ClientLoop()
        self._password = password
        self._secret = vehicle_secret(settings)
        self.vehicles: dict[str, SimulatedVehicle] = {}
        self._stop = threading.Event()

    def add(self, vehicle: Vehicle) -> None:
        if vehicle.vin in self.vehicles:
            return
        password = self._password or vehicle_password(self._secret, vehicle.vin)
        car = SimulatedVehicle(
            self._settings,
            vehicle,
            password=password,
            backend=self._backend,
            pool=self._pool,
            loop=self._loop,
        )
        self.vehicles[vehicle.vin] = car
        car.start()

    def remove(self, vin: str) -> None:
        car = self.vehicles.pop(vin, None)
        if car is not None:
            car.stop()

    def sync(self, vehicles: Sequence[Vehicle]) -> None:
        """Run exactly ``vehicles``: start new ones, stop the ones no longer listed."""
        wanted = {v.vin: v for v in vehicles}
        for vin in set(self.vehicles) - set(wanted):
            self.remove(vin)
        for vehicle in wanted.values():
            self.add(vehicle)

    def run(self, *, follow_registry: bool) -> None:
        """Heartbeat until ``stop()``; with ``follow_registry``, track the registry."""
        interval = self._settings.mqtt_heartbeat_interval_s
        next_beat = next_poll = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_beat:
                for car in list(self.vehicles.values()):
                    car.heartbeat()
                next_beat = now + interval
            if follow_registry and now >= next_poll:
                try:
                    vehicles = registered_vehicles(self._settings)
                    self.sync([v for v in vehicles if is_simulated(v)])
                except Exception as exc:  # Redis away: keep the vehicles we have
                    log.warning("agent_registry_unreachable", error=str(exc))
                next_poll = now + REGISTRY_POLL_S
            wake = min(next_beat, next_poll) if follow_registry else next_beat
            self._stop.wait(max(0.0, wake - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()

    def close(self, *, wait_s: float = 3.0) -> None:
        """Every vehicle says goodbye at once, then all disconnect (within ``wait_s``
        for the goodbyes, however many vehicles)."""
        cars = list(self.vehicles.values())
        self.vehicles.clear()
        pending = [(car, car.say_goodbye()) for car in cars]
        deadline = time.monotonic() + wait_s
        for _car, info in pending:
            if info is not None:
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
        for car in cars:
            car.close()
        deadline = time.monotonic() + 2.0
        while any(car.connected.is_set() for car in cars) and time.monotonic() < deadline:
            time.sleep(0.02)  # the I/O thread writes the DISCONNECTs
        self._loop.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _raise_open_files_limit() -> None:
    """One socket per vehicle: take the hard limit on open files (often 1024 soft)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent", description=__doc__.split("\n")[0])
    parser.add_argument("--vin", action="append", default=[], help="run only this vehicle")
    parser.add_argument("--fleet", type=Path, help="JSON list of vehicles to run")
    parser.add_argument("--backend", default="agent.backend:simulator",
                        help="module:factory answering the requests")  # fmt: skip
    parser.add_argument("--password-file", type=Path,
                        help="the vehicle's broker password (one --vin only)")  # fmt: skip
    parser.add_argument("--pool-size", type=int, default=64, help="concurrent exchanges")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _raise_open_files_limit()
    settings = get_settings()
    configure_logging(settings, "agent")
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if settings.connector != "mqtt":
        print("SOVD_CONNECTOR is not 'mqtt': no vehicle agent.", flush=True)
        done.wait()
        return 0
    if args.password_file and len(args.vin) != 1:
        raise SystemExit("--password-file needs exactly one --vin")
    password = args.password_file.read_text().strip() if args.password_file else None
    if args.fleet:
        vehicles = [Vehicle.model_validate(v) for v in json.loads(args.fleet.read_text())]
    else:
        wait_for_redis(settings.effective_redis_url)
        vehicles = registered_vehicles(settings)
    if not args.vin and not args.fleet:
        vehicles = [v for v in vehicles if is_simulated(v)]
    if args.vin:
        wanted = {vin.upper() for vin in args.vin}
        vehicles = [v for v in vehicles if v.vin in wanted]
        missing = wanted - {v.vin for v in vehicles}
        if missing:
            raise SystemExit(f"not in the registry: {', '.join(sorted(missing))}")
    agent = Agent(settings, backend_spec=args.backend, pool_size=args.pool_size, password=password)
    agent.sync(vehicles)
    log.info("agent_started", vehicles=len(vehicles), broker=f"{settings.mqtt_host}:"
             f"{settings.mqtt_port}")  # fmt: skip
    runner = threading.Thread(
        target=agent.run, kwargs={"follow_registry": not args.fleet and not args.vin}, daemon=True
    )
    runner.start()
    done.wait()
    agent.stop()
    agent.close()
    log.info("agent_stopped")
    return 0
