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

Measured per connection, from just before the revoking write: to the arrival of the
server's 4403 close frame in the client (what the relay did), and to the end of the
closing handshake (the client's part included). ``--client-processes`` processes hold
the sockets; clients, Redis and relays share the machine and its clock, so the clients
are ``bench.lean_ws`` by default (a full client library spends more CPU per closing
handshake than the relay; ``--client websockets`` measures with one). Logouts come
``--logout-gap-ms`` apart. With
``--busy-rate N`` a publisher sends N events per second to the followed commands
meanwhile, so the push waits behind live traffic on each relay's Pub/Sub connection.
The protocol promises 1 s (docs/protocol.md, "Revocation").

    .venv/bin/python -m bench.revocation [--connections 2000] [--users 50] [--busy-rate 0 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import statistics
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.flame import py_spy, top_frames
from bench.lean_ws import LeanClient, open_lean
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


class _TimedConnection(ClientConnection):
    """A client connection that notes when the server's close frame arrived."""

    close_frame_at: float | None = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.close_frame_at is None and self.protocol.close_rcvd is not None:
            self.close_frame_at = time.time()


Closed = tuple[float, float, int | None]


def _client_process(
    pipe: Connection, targets: list[tuple[int, str]], wait_s: float, client: str
) -> None:
    """Open one stream per ``(user, url)`` with ``client`` (``lean``: ``bench.lean_ws``;
    ``websockets``: the library), say ``ready``, then report every stream's
    ``(user, close_frame_at, closed_at, code)`` once all closed (or ``wait_s`` after
    ``go``)."""

    async def one_lean(gate: asyncio.Semaphore, url: str) -> LeanClient:
        async with gate:
            return await open_lean(url, timeout_s=60)

    async def read_lean(ws: LeanClient) -> Closed:
        closed_at = await ws.ended
        return ws.close_frame_at or closed_at, closed_at, ws.close_code

    async def one(gate: asyncio.Semaphore, url: str) -> _TimedConnection:
        async with gate:
            ws = await connect(
                url,
                open_timeout=60,
                max_queue=None,
                compression=None,
                create_connection=_TimedConnection,
            )
            await asyncio.wait_for(ws.recv(), 30)  # "subscribed": admitted and live
        assert isinstance(ws, _TimedConnection)
        return ws

    async def read(ws: _TimedConnection) -> Closed:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass
        closed_at = time.time()
        return ws.close_frame_at or closed_at, closed_at, ws.close_code

    async def go() -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        readers: list[asyncio.Task[Closed]]
        lean: list[LeanClient] = []
        sockets: list[_TimedConnection] = []
        if client == "lean":
            lean = await asyncio.gather(*(one_lean(gate, url) for _, url in targets))
            readers = [asyncio.create_task(read_lean(ws)) for ws in lean]
        else:
            sockets = await asyncio.gather(*(one(gate, url) for _, url in targets))
            readers = [asyncio.create_task(read(ws)) for ws in sockets]
        pipe.send("ready")
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "go"
        done, _ = await asyncio.wait(readers, timeout=wait_s)
        pipe.send(
            [
                (user, *reader.result()) if reader in done else (user, None, None, None)
                for (user, _), reader in zip(targets, readers, strict=True)
            ]
        )
        for lean_ws in lean:
            lean_ws.close()
        for ws in sockets:
            await ws.close()

    asyncio.run(go())


@dataclass
class Row:
    scenario: str
    busy_rate: int
    connections: int
    closed_4403: int
    frame_ms: list[float]
    closed_ms: list[float]

    def line(self) -> str:
        head = f"| {self.scenario} | {self.busy_rate:,} | {self.connections:,} | "
        if not self.frame_ms:
            return head + "0 | — | — | — | — | — | — |"
        parts = []
        for lat in (self.frame_ms, self.closed_ms):
            within = sum(1 for v in lat if v <= 1000) / len(lat)
            parts.append(
                f"{statistics.median(lat):.1f} / {_percentile(lat, 99):.1f} | "
                f"{max(lat):.1f} | {within:.2%}"
            )
        return head + f"{self.closed_4403:,} | " + " | ".join(parts) + " |"


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


def _profilers(pids: dict[str, int], profile: Path | None, label: str) -> list[Any]:
    """py-spy on each process for the next few seconds (``--profile``), attached."""
    if profile is None:
        return []
    profile.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, pid in pids.items():
        out = profile / f"revocation-{label}-{name}.txt"
        spy = subprocess.Popen(
            [py_spy(), "record", "-p", str(pid), "-d", "4", "-r", "500", "-f", "raw",
             "-o", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        spies.append((name, spy, out))
    time.sleep(1.0)  # py-spy attaches before the measured moment
    return spies


def _report(spies: list[Any]) -> None:
    for name, spy, out in spies:
        spy.wait()
        print(f"\n# profile of {name} ({out}):")
        print("\n".join(top_frames(out, top=15)))


async def _revoke(
    scenario: str, world: World, users: list[User], claims: list[tuple[str, float]], gap_s: float
) -> dict[int, float]:
    """The revoking writes; returns when each user's was sent."""
    client = async_client(world.settings.effective_redis_url)
    started: dict[int, float] = {}
    try:
        # Every pooled connection open beforehand: the writes measure the push, not TCP.
        await asyncio.gather(*(client.ping() for _ in users))
        store = UserStore(client, world.keys)
        if scenario == "logout":
            first = time.monotonic()
            for n, user in enumerate(users):
                await asyncio.sleep(max(0.0, first + n * gap_s - time.monotonic()))
                started[n] = time.time()
                await revoke_access_tokens(
                    client, world.keys, user.user_id, [claims[n]], now_ts=time.time()
                )
        else:
            started = dict.fromkeys(range(len(users)), time.time())
            await asyncio.gather(*(store.set_active(u.username, False) for u in users))
    finally:
        await client.aclose()
    return started


def _scenario(
    scenario: str,
    world: World,
    ports: tuple[int, int],
    users: list[User],
    commands: list[str],
    args: argparse.Namespace,
    relays: dict[str, int],
    publisher: Publisher,
) -> tuple[int, list[float], list[float]]:
    """Streams spread over ``args.client_processes`` processes; returns the 4403 closes,
    and the latencies (ms) of their close frames and of their closing handshakes."""
    issued = [issue_token(world.settings, user, "access") for user in users]
    claims = [(c.jti, c.expires_at.timestamp()) for _, c in issued]
    targets = [
        (n % len(users), f"ws://127.0.0.1:{ports[n % 2]}/ws/responses/{command_id}"
         f"?token={issued[n % len(users)][0]}")
        for n, command_id in enumerate(commands)
    ]  # fmt: skip
    wait_s = len(users) * args.logout_gap_ms / 1000 + CLOSE_TIMEOUT_S
    context = multiprocessing.get_context("fork")
    children = []
    for part in range(args.client_processes):
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_client_process,
            args=(theirs, targets[part :: args.client_processes], wait_s, args.client),
        )
        process.start()
        children.append((process, ours))
    try:
        for _, pipe in children:
            if pipe.recv() != "ready":
                raise RuntimeError("a client process failed to open its streams")
        publisher.start()  # live traffic from here on, when asked for
        pids = {**relays, **{f"clients-{n}": p.pid for n, (p, _) in enumerate(children)}}
        spies = _profilers(pids, args.profile, scenario)
        for _, pipe in children:
            pipe.send("go")
        started = asyncio.run(_revoke(scenario, world, users, claims, args.logout_gap_ms / 1000))
        closes = [close for _, pipe in children for close in pipe.recv()]
        _report(spies)
    finally:
        for process, _ in children:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    revoked = [
        (started[user], frame_at, closed_at)
        for user, frame_at, closed_at, code in closes
        if code == CloseCode.SESSION_REVOKED
    ]
    return (
        len(revoked),
        [(frame_at - t0) * 1000 for t0, frame_at, _ in revoked],
        [(closed_at - t0) * 1000 for t0, _, closed_at in revoked],
    )


class Publisher:
    """``rate`` events per second over ``commands``, in ten batches a second, from
    ``start`` until ``stop`` (none at rate 0)."""

    def __init__(self, world: World, commands: list[str], rate: int) -> None:
        self.world, self.commands, self.rate = world, commands, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        if self.rate:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        batch = max(1, self.rate // 10)
        position = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            chosen = [self.commands[(position + i) % len(self.commands)] for i in range(batch)]
            position += batch
            self.world.publish(chosen)
            next_at += 0.1
            self._stop.wait(max(0.0, next_at - time.monotonic()))


def run(valkey: RedisServer, args: argparse.Namespace) -> list[Row]:
    rows = []
    for rate in args.busy_rate:
        for scenario in args.scenarios:
            world = World.create(valkey.url)
            first, port_a = start_server("relay", world, valkey.url)
            second, port_b = start_server("relay", world, valkey.url)
            publisher: Publisher | None = None
            try:
                users = asyncio.run(_users(world, args.users))
                commands = world.commands(args.connections, [u.user_id for u in users])
                publisher = Publisher(world, commands, rate)
                relays = {"relay-1": first.pid, "relay-2": second.pid}
                closed, frames, closes = _scenario(
                    scenario, world, (port_a, port_b), users, commands, args, relays, publisher
                )
                rows.append(Row(scenario, rate, args.connections, closed, frames, closes))
                print(rows[-1].line(), flush=True)
            finally:
                if publisher is not None:
                    publisher.stop()
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
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument(
        "--client",
        choices=["lean", "websockets"],
        default="lean",
        help="lean: bench.lean_ws (the least CPU per socket); websockets: the library",
    )
    parser.add_argument(
        "--logout-gap-ms", type=float, default=20.0, help="between two users' logouts"
    )
    parser.add_argument("--profile", type=Path, help="py-spy each process into this directory")
    parser.add_argument(
        "--scenarios", nargs="+", choices=["logout", "deactivate"], default=["logout", "deactivate"]
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
            "latency from the revoking write to the client's receipt of the 4403 close frame, "
            "and to the end of the closing handshake"
        )
        print(
            "| scenario | events/s meanwhile | connections | closed 4403 "
            "| close frame p50 / p99 ms | max ms | within 1 s "
            "| handshake done p50 / p99 ms | max ms | within 1 s |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        run(server, args)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
