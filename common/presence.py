"""Presence: a vehicle's ``connection_status`` and ``last_seen_at``, from its own reports.

Every transport (the simulated fleet, MQTT, gRPC gateways) reports through ``Presence``:
``connected`` when a vehicle comes online, ``heartbeat`` while it stays, ``disconnected``
on a clean disconnect or a last will, and ``expire_silent`` (the api's sweep) when it
stopped reporting for ``SOVD_PRESENCE_TIMEOUT_S``. Nothing else writes those two fields.

Each report is one optimistic transaction on the vehicle's document (``WATCH``), so
concurrent reports and sweeps from many processes agree: every transition is recorded,
published on ``Keys.presence_events`` (JSON of ``PresenceChange``) and audited exactly
once, in the same ``MULTI`` as the new status. A report stamped before the vehicle's
``last_seen_at`` is stale (it arrived late) and changes nothing. A report for a vehicle
that is not registered changes nothing and returns ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal, cast

import redis.asyncio
import structlog
from pydantic import BaseModel, ConfigDict
from redis.exceptions import WatchError

from common.audit import AsyncAuditLog, AuditAction
from common.keys import Keys
from common.settings import Settings
from common.timeutil import as_utc, epoch_ms, utcnow
from common.vehicles import ConnectionStatus, Vehicle

__all__ = ["REASONS", "Presence", "PresenceChange"]

log = structlog.get_logger(__name__)

#: The reasons the service itself gives; transports may add their own.
REASONS = ("connected", "heartbeat", "clean_disconnect", "last_will", "heartbeat_timeout")

#: Vehicles ended by one sweep round at most (the next round takes the rest).
SWEEP_BATCH = 500


class PresenceChange(BaseModel):
    """A vehicle's connection status changed; also the event on ``Keys.presence_events``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Literal["presence"] = "presence"
    #: The realtime protocol's discriminator (clients read ``event`` on every message).
    event: Literal["presence"] = "presence"
    vehicle_id: str
    vin: str
    connection_status: ConnectionStatus
    previous_status: ConnectionStatus
    last_seen_at: datetime | None
    reason: str
    at: datetime


class Presence:
    """Records presence reports; one per process, sharing the process's Redis client."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, settings: Settings) -> None:
        self._client = client
        self._keys = keys
        self._timeout = timedelta(seconds=settings.presence_timeout_s)
        self._audit = AsyncAuditLog(client, keys, settings)

    async def connected(
        self, vehicle_id: str, *, reason: str = "connected", at: datetime | None = None
    ) -> PresenceChange | None:
        """The vehicle is online (it connected, or said so); moves ``last_seen_at``."""
        return await self._report(
            vehicle_id, ConnectionStatus.CONNECTED, reason=reason, at=at, seen=True
        )

    async def heartbeat(
        self, vehicle_id: str, *, at: datetime | None = None
    ) -> PresenceChange | None:
        """The vehicle is still there: moves ``last_seen_at``; a heartbeat from a
        disconnected vehicle connects it (a change)."""
        return await self._report(
            vehicle_id, ConnectionStatus.CONNECTED, reason="heartbeat", at=at, seen=True
        )

    async def disconnected(
        self, vehicle_id: str, *, reason: str, at: datetime | None = None
    ) -> PresenceChange | None:
        """The vehicle went away (``clean_disconnect``, ``last_will``, ...);
        ``last_seen_at`` keeps the time of its last report."""
        return await self._report(
            vehicle_id, ConnectionStatus.DISCONNECTED, reason=reason, at=at, seen=False
        )

    async def expire_silent(self, *, now: datetime | None = None) -> list[PresenceChange]:
        """Disconnect every connected vehicle silent for ``SOVD_PRESENCE_TIMEOUT_S``."""
        now = as_utc(now) if now is not None else utcnow()
        cutoff = now - self._timeout
        silent = cast(
            list[str],
            await self._client.zrangebyscore(
                self._keys.presence_seen, "-inf", epoch_ms(cutoff), start=0, num=SWEEP_BATCH
            ),
        )
        changes = []
        for vehicle_id in silent:
            change = await self._report(
                vehicle_id,
                ConnectionStatus.DISCONNECTED,
                reason="heartbeat_timeout",
                at=now,
                seen=False,
                # A heartbeat may have arrived since the sorted set was read.
                still=lambda v: v.last_seen_at is None or as_utc(v.last_seen_at) <= cutoff,
            )
            if change is not None:
                changes.append(change)
        if changes:
            log.info("presence_expired", count=len(changes))
        return changes

    async def _report(
        self,
        vehicle_id: str,
        status: ConnectionStatus,
        *,
        reason: str,
        at: datetime | None,
        seen: bool,
        still: Callable[[Vehicle], bool] | None = None,
    ) -> PresenceChange | None:
        at = as_utc(at) if at is not None else utcnow()
        key = self._keys.vehicle(vehicle_id)
        async with self._client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        await self._client.zrem(self._keys.presence_seen, vehicle_id)
                        log.warning("presence_unknown_vehicle", vehicle_id=vehicle_id)
                        return None
                    vehicle = Vehicle.model_validate_json(raw)
                    last = as_utc(vehicle.last_seen_at) if vehicle.last_seen_at else None
                    stale = last is not None and at < last
                    if stale or (still is not None and not still(vehicle)):
                        return None
                    previous = vehicle.connection_status
                    last_seen = at if seen else vehicle.last_seen_at
                    updated = vehicle.model_copy(
                        update={"connection_status": status, "last_seen_at": last_seen}
                    )
                    change = None
                    pipe.multi()  # type: ignore[no-untyped-call]  # untyped in redis-py
                    pipe.set(key, updated.model_dump_json())
                    if status == ConnectionStatus.CONNECTED:
                        pipe.zadd(self._keys.presence_seen, {vehicle_id: epoch_ms(at)})
                    else:
                        pipe.zrem(self._keys.presence_seen, vehicle_id)
                    if previous != status:
                        change = PresenceChange(
                            vehicle_id=vehicle_id,
                            vin=vehicle.vin,
                            connection_status=status,
                            previous_status=previous,
                            last_seen_at=last_seen,
                            reason=reason,
                            at=at,
                        )
                        pipe.publish(self._keys.presence_events, change.model_dump_json())
                        action = (
                            AuditAction.VEHICLE_CONNECTED
                            if status == ConnectionStatus.CONNECTED
                            else AuditAction.VEHICLE_DISCONNECTED
                        )
                        audit_keys, audit_args = self._audit.args(
                            action, vehicle_id=vehicle_id, details={"reason": reason[:64]}
                        )
                        self._audit.queue(pipe, audit_keys, audit_args)
                    await pipe.execute()
                except WatchError:
                    continue
                if change is not None:
                    log.info(
                        "presence_changed",
                        vehicle_id=vehicle_id,
                        status=status.value,
                        reason=reason,
                    )
                return change
