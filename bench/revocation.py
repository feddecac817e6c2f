"""How long a logout or a deactivation takes to close the open streams it ends, on two
realtime processes.

Starts a private Valkey server and two relay processes (``python -m realtime``) on it,
then opens ``--connections`` WebSockets, half on each process, for ``--users`` users
(each user's connections share one access token and follow distinct commands of
that user). Two
scenarios, each on fresh tokens:

- ``logout``: the users' tokens are revoked one user at a time, as ``POST
  /auth/logout`` revokes them (``common.auth.revoke_access_tokens``: the revocation
  key and the push in one transaction);
- ``deactivate``: every user is deactivated at once (``UserStore.set_active``).

Measured per connection: from just before the revoking write to the arrival of its
4403 close frame (client, Redis and relays share the machine and its clock). With
``--busy-rate N`` a publisher sends N events per second to the followed commands
meanwhile, so the push waits behind live traffic on each relay's Pub/Sub connection.
The protocol promises 1 s (docs/protocol.md, "Revocation").

    .venv/bin/python -m bench.revocation [--connections 2000] [--users 50] [--busy-rate 0 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.realtime import SECRET, World, _percentile, _raise_fd_limit, _stop, start_server
from common.auth import revoke_access_tokens
from common.protocol import CloseCode
from common.redis_client import async_client
from common.tokens import issue_token
from common.users import Role, User, UserStore
from tests.support import RedisServer

#: Handshakes in flight at once.
CONNECT_CONCURRENCY = 200
#: Seconds a connection waits for its close before it counts as never closed.
CLOSE_TIMEOUT_S = 30.0


@dataclass
class Stream:
    """One open WebSocket and when (and how) it was closed."""

    user: int
    ws: ClientConnection
    closed_at: float | None = None
    code: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        try:
            async for _ in self.ws:
                pass
        except ConnectionClosed:
            pass
        self.closed_at = time.time()
        self.code = self.ws.close_code
        self.done.set()


@dataclass
class Row:
    scenario: str
    busy_rate: int
    connections: int
    closed_4403: int
    latencies_ms: list[float]

    def line(self) -> str:
        lat = self.latencies_ms
        if not lat:
            return (
                f"| {self.scenario} | {self.busy_rate} | {self.connections} | 0 | — | — | — | — |"
            )
        within = sum(1 for v in lat if v <= 1000)
        return (
            f"| {self.scenario} | {self.busy_rate:,} | {self.connections:,} | "
            f"{self.closed_4403:,} | {statistics.median(lat):.1f} | "
            f"{_percentile(lat, 99):.1f} | {max(lat):.1f} | {within / len(lat):.2%} |"
        )


async def _users(world: World, count: int) -> list[User]:
    client = async_client(world.settings.effective_redis_url)
    try:
        store = UserStore(client, world.keys)
        run = uuid.uuid4().hex[:6]
        return [
            await store.create(username=f"u{run}{n}", password=SECRET, role=Role.ENGINEER)
            for n in range(count)
        ]
    finally:
        await client.aclose()


async def _open(
    ports: tuple[int, int], users: list[User], tokens: list[str], commands: list[str]
) -> list[Stream]:
    """One stream per command, users and relay processes taken in turn."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(n: int, command_id: str) -> Stream:
        user = n % len(users)
        url = f"ws://127.0.0.1:{ports[n % 2]}/ws/responses/{command_id}?token={tokens[user]}"
        async with gate:
            ws = await connect(url, open_timeout=60, max_queue=None, compression=None)
            await asyncio.wait_for(ws.recv(), 30)  # "subscribed": admitted and live
        return Stream(user=user, ws=ws)

    streams = await asyncio.gather(*(one(n, c) for n, c in enumerate(commands)))
    return list(streams)


def _tokens(world: World, users: list[User]) -> tuple[list[str], list[tuple[str, float]]]:
    issued = [issue_token(world.settings, user, "access") for user in users]
    tokens = [token for token, _ in issued]
    claims = [(c.jti, c.expires_at.timestamp()) for _, c in issued]
    return tokens, claims


async def _scenario(
    scenario: str,
    world: World,
    ports: tuple[int, int],
    users: list[User],
    commands: list[str],
) -> tuple[int, list[float]]:
    tokens, claims = _tokens(world, users)
    streams = await _open(ports, users, tokens, commands)
    readers = [asyncio.create_task(s.read()) for s in streams]
    started: dict[int, float] = {}
    client = async_client(world.settings.effective_redis_url)
    try:
        store = UserStore(client, world.keys)
        if scenario == "logout":
            for n, user in enumerate(users):
                mine = [s for s in streams if s.user == n]
                started[n] = time.time()
                await revoke_access_tokens(
                    client, world.keys, user.user_id, [claims[n]], now_ts=time.time()
                )
                await asyncio.wait_for(
                    asyncio.gather(*(s.done.wait() for s in mine)), CLOSE_TIMEOUT_S
                )
        else:
            now = time.time()
            started = dict.fromkeys(range(len(users)), now)
            await asyncio.gather(*(store.set_active(u.username, False) for u in users))
        await asyncio.wait_for(asyncio.gather(*readers), CLOSE_TIMEOUT_S)
    finally:
        await client.aclose()
        for stream in streams:
            await stream.ws.close()
    closed = [s for s in streams if s.code == CloseCode.SESSION_REVOKED]
    latencies = [(s.closed_at - started[s.user]) * 1000 for s in closed if s.closed_at is not None]
    return len(closed), latencies


def _publisher(world: World, commands: list[str], rate: int, stop: threading.Event) -> None:
    """``rate`` events per second over ``commands``, in ten batches a second."""
    batch = max(1, rate // 10)
    position = 0
    next_at = time.monotonic()
    while not stop.is_set():
        chosen = [commands[(position + i) % len(commands)] for i in range(batch)]
        position += batch
        world.publish(chosen)
        next_at += 0.1
        stop.wait(max(0.0, next_at - time.monotonic()))


def run(valkey: RedisServer, args: argparse.Namespace) -> list[Row]:
    rows = []
    for rate in args.busy_rate:
        for scenario in ("logout", "deactivate"):
            world = World.create(valkey.url)
            first, port_a = start_server("relay", world, valkey.url)
            second, port_b = start_server("relay", world, valkey.url)
            stop = threading.Event()
            thread: threading.Thread | None = None
            try:
                users = asyncio.run(_users(world, args.users))
                commands = world.commands(args.connections, [u.user_id for u in users])
                if rate:
                    thread = threading.Thread(
                        target=_publisher, args=(world, commands, rate, stop), daemon=True
                    )
                    thread.start()
                closed, latencies = asyncio.run(
                    _scenario(scenario, world, (port_a, port_b), users, commands)
                )
                rows.append(Row(scenario, rate, args.connections, closed, latencies))
                print(rows[-1].line(), flush=True)
            finally:
                stop.set()
                if thread is not None:
                    thread.join()
                _stop(first)
                _stop(second)
                world.client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000, help="over both processes")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument(
        "--busy-rate", type=int, nargs="+", default=[0, 5000], help="events/s meanwhile"
    )
    args = parser.parse_args()
    if args.connections < args.users:
        parser.error("--connections must be at least --users")
    _raise_fd_limit()
    server = RedisServer()
    server.start()
    probe: Any = redis.Redis.from_url(server.url)
    probe.config_set("maxclients", 10_000)
    probe.close()
    try:
        print(
            f"# {args.connections} connections on 2 realtime processes, {args.users} users; "
            "close latency from the revoking write to the 4403 frame"
        )
        print(
            "| scenario | events/s meanwhile | connections | closed 4403 | p50 ms | p99 ms | "
            "max ms | within 1 s |"
        )
        print("|---|---|---|---|---|---|---|---|")
        run(server, args)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
