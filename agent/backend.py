"""What answers a vehicle's diagnostic requests: the backend interface of the agent.

A backend is any object with the connector's one method (``workers.connector``)::

    def execute(self, request: DiagnosticRequest) -> Iterator[ResponsePart]: ...

The agent calls it in a thread of its pool, once per request, with ``request.vehicle``
the vehicle asked (its registry record), ``request.deadline`` a ``time.monotonic()``
value and ``request.cancelled()`` turning true when the service cancels. Yield each
part of the answer as it is ready (the last with ``is_final=True``); raise a
``ConnectorError`` leaf to fail (``NegativeResponse`` carries the ECU's answer,
``EcuNotResponding`` and ``ConnectionLost`` may be retried by the service). The agent
numbers the parts, sends them, repeats them when the service resumes, and drops
requests that arrive past their deadline.

A factory ``build(settings) -> backend`` is named on the command line
(``python -m agent --backend package.module:build``). ``simulator`` below is the
default: the same ECU models as the in-worker simulator (``workers.simulator``), one
simulator, two hosts. ``agent.example_backend`` shows a car's own software wired in.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from common.keys import Keys
from common.redis_client import sync_client
from common.settings import Settings
from workers.connector import VehicleConnector
from workers.simulator import SimulatedFleet

__all__ = ["BackendFactory", "VehicleBackend", "load_factory", "simulator"]

#: The backend interface is the connector's: whatever a worker can drive, a car can host.
VehicleBackend = VehicleConnector
BackendFactory = Callable[[Settings], VehicleBackend]


def simulator(settings: Settings) -> VehicleBackend:
    """The simulated ECUs. Their fault memory lives in the service's Redis, as for the
    in-worker simulator, so both hosts give the same answers for the same vehicle."""
    client = sync_client(settings.effective_redis_url)
    return SimulatedFleet(
        client,
        Keys(settings.key_prefix),
        seed=settings.sim_seed,
        delay_scale=settings.sim_delay_scale,
    )


def load_factory(spec: str) -> BackendFactory:
    """``module:function`` -> the factory it names."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--backend wants module:function, got {spec!r}")
    factory = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(factory):
        raise ValueError(f"{spec!r} does not name a callable")
    return factory  # type: ignore[no-any-return]  # a user's factory, checked at call
