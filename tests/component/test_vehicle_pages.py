"""The fleet read a page at a time (the presence snapshot of every vehicle)."""

from __future__ import annotations

import asyncio

from common.fleet import demo_fleet, registered
from common.keys import Keys
from common.redis_client import async_client
from common.settings import Settings
from common.vehicles import VehicleStore


def test_a_vehicle_removed_between_two_pages_leaves_no_other_one_out(
    settings: Settings, keys: Keys
) -> None:
    fleet = [registered(v) for v in demo_fleet()]

    async def read() -> tuple[list[str], str]:
        client = async_client(settings.effective_redis_url)
        try:
            store = VehicleStore(client, keys)
            for vehicle in fleet:
                await store.put(vehicle)
            seen: list[str] = []
            removed = ""
            async for page in store.pages(3):
                seen.extend(v.vehicle_id for v in page)
                if not removed:  # after the first page, one of it goes away
                    removed = page[0].vehicle_id
                    await store.delete(removed)
            return seen, removed
        finally:
            await client.aclose()

    seen, removed = asyncio.run(read())
    assert len(seen) == len(set(seen)), "a vehicle came twice"
    assert set(seen) == {v.vehicle_id for v in fleet}, "a vehicle still registered was left out"
    assert removed in seen  # read before it went
