"""Many WebSocket clients on the realtime relay, against a naive one-subscription-per-socket relay.

Starts a private Valkey server, then for each server kind (``relay``: ``python -m
realtime``; ``naive``: a tiny Starlette app in this file that opens one Redis
Pub/Sub subscription per socket and forwards its messages) and each client count,
two scenarios:

- ``distinct``: every client follows its own command;
- ``shared``: every client follows the same command.

Reported per run: time to connect all clients (and the per-handshake p50/p99), the
server's and Redis's RSS growth per connection (``/proc/<pid>/status``; the naive relay
costs Redis a client connection per socket), delivery rate (client
deliveries per second while events are published as fast as a pipelined publisher
can) and publish -> client latency p50/p99 (events published at a steady pace, each
carrying its publish time; client and publisher share the clock). Loopback only;
clients, server, Redis and publisher share the machine.

    .venv/bin/python -m bench.realtime [--clients 1000 10000] [--naive-max 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import redis

from bench.ws_clients import ClientPool
from common.commands import CommandRecord, CommandStatus
from common.events import Response, ResponseEvent
from common.keys import Keys, response_channel
from common.redis_client import async_client
from common.settings import Settings
from common.timeutil import utcnow
from common.tokens import issue_token
from common.users import Role, User, UserStore
from tests.support import ROOT, RedisServer, free_port, wait_for

SECRET = "bench-secret-that-is-long-enough-0123456789abcdef"  # noqa: S105 - private bench stack
#: Handshakes in flight at once (the listen backlog is finite).
CONNECT_CONCURRENCY = 500
#: Events published per pipeline in the throughput phase.
PIPELINE = 500
#: Entries kept per command log (as ``SOVD_EVENT_LOG_MAXLEN``).
LOG_MAXLEN = 10_000


# -- the naive baseline ------------------------------------------------------------------


def naive_app(redis_url: str) -> Any:
    """One Redis Pub/Sub subscription per WebSocket, no replay, no auth: the baseline."""
    import redis.asyncio
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    client = redis.asyncio.Redis.from_url(
        redis_url, decode_responses=True, max_connections=1_000_000
    )

    async def relay(websocket: WebSocket) -> None:
        await websocket.accept()
        pubsub = client.pubsub()
        await pubsub.subscribe(response_channel(websocket.path_params["command_id"]))
        await websocket.send_text('{"event":"subscribed"}')

        async def forward() -> None:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    await websocket.send_text(message["data"])

        task = asyncio.create_task(forward())
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            task.cancel()
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    return Starlette(routes=[WebSocketRoute("/ws/responses/{command_id}", relay)])


def serve_naive(port: int, redis_url: str) -> None:
    import uvicorn

    _raise_fd_limit()
    uvicorn.run(
        naive_app(redis_url),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        backlog=4096,
    )


# -- set-up --------------------------------------------------------------------------------


def _raise_fd_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))]


@dataclass
class World:
    """A user and commands under a fresh prefix, and a publisher of their events.

    Events are written as the event script writes them (``event_seq`` on the command,
    the entry ``<seq>-0`` in its log, then the publish), but pipelined in batches, so the
    publisher is not what limits the delivery rate.
    """

    settings: Settings
    keys: Keys
    client: redis.Redis
    token: str
    user_id: str
    seqs: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, redis_url: str) -> World:
        settings = Settings(
            _env_file=None,
            redis_url=redis_url,
            key_prefix=f"bench-{uuid.uuid4().hex[:8]}",
            jwt_secret=SECRET,
            access_token_ttl_s=3600,
        )
        keys = Keys(settings.key_prefix)

        async def make_user() -> User:
            client = async_client(redis_url)
            try:
                return await UserStore(client, keys).create(
                    username="bench", password=SECRET, role=Role.ENGINEER
                )
            finally:
                await client.aclose()

        user = asyncio.run(make_user())
        token = issue_token(settings, user, "access")[0]
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        return cls(settings, keys, client, token, user.user_id)

    def commands(self, count: int, owners: list[str] | None = None) -> list[str]:
        """``count`` commands in progress, of this world's user or of ``owners`` in turn."""
        ids = [str(uuid.uuid4()) for _ in range(count)]
        pipe = self.client.pipeline(transaction=False)
        for n, command_id in enumerate(ids):
            record = CommandRecord(
                command_id=command_id,
                user_id=owners[n % len(owners)] if owners else self.user_id,
                vehicle_id=str(uuid.uuid4()),
                command_name="ReadDTC",
                command_params={"ecuAddress": "0x10"},
                status=CommandStatus.IN_PROGRESS,
                submitted_at=utcnow(),
            )
            pipe.hset(self.keys.command(command_id), mapping=record.to_redis())  # type: ignore[arg-type]
        pipe.execute()
        return ids

    def _event(self, command_id: str) -> str:
        """The command's next response event, carrying its publish time in ``t``."""
        seq = self.seqs.get(command_id, 0) + 1
        self.seqs[command_id] = seq
        return ResponseEvent(
            command_id=command_id,
            seq=seq,
            sequence_number=seq,
            response=Response(
                response_id=str(uuid.uuid4()),
                response_payload={"t": time.time()},
                sequence_number=seq,
                is_final=False,
                received_at=utcnow(),
            ),
        ).model_dump_json(exclude_none=True)

    def publish(self, command_ids: list[str]) -> None:
        """One event per id, pipelined in batches."""
        for start in range(0, len(command_ids), PIPELINE):
            pipe = self.client.pipeline(transaction=False)
            for command_id in command_ids[start : start + PIPELINE]:
                data = self._event(command_id)
                seq = self.seqs[command_id]
                pipe.hset(self.keys.command(command_id), "event_seq", seq)
                pipe.xadd(
                    self.keys.command_events(command_id),
                    {"event": data},
                    id=f"{seq}-0",
                    maxlen=LOG_MAXLEN,
                    approximate=True,
                )
                pipe.publish(response_channel(command_id), data)
            pipe.execute()


def start_server(
    kind: str, world: World, redis_url: str, *, port: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = port or free_port()
    env = {
        **os.environ,
        "SOVD_REDIS_URL": redis_url,
        "SOVD_KEY_PREFIX": world.settings.key_prefix,
        "SOVD_JWT_SECRET": SECRET,
        "SOVD_REALTIME_PORT": str(port),
        "SOVD_LOG_LEVEL": "WARNING",
        "SOVD_LOG_FORMAT": "json",
        "SOVD_WS_MAX_CONNECTIONS_PER_USER": "1000000",
    }
    if kind == "relay":
        argv = [sys.executable, "-m", "bench.realtime", "--serve-relay"]
    else:
        argv = [sys.executable, "-m", "bench.realtime", "--serve-naive", str(port), redis_url]
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    if kind == "relay":
        wait_for(lambda: _ready(port), timeout_s=30, what="the relay")
    else:
        wait_for(lambda: _listening(port), timeout_s=30, what="the naive relay")
    return process, port


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Result:
    kind: str
    scenario: str
    clients: int
    connect_s: float
    handshakes_per_s: float
    handshake_p50_ms: float
    handshake_p99_ms: float
    rss_per_conn_kib: float
    redis_rss_per_conn_kib: float
    deliveries_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float

    def row(self) -> str:
        return (
            f"| {self.kind} | {self.scenario} | {self.clients} | {self.connect_s:.1f} | "
            f"{self.handshakes_per_s:,.0f} | "
            f"{self.handshake_p50_ms:.0f} / {self.handshake_p99_ms:.0f} | "
            f"{self.rss_per_conn_kib:.1f} | {self.redis_rss_per_conn_kib:.1f} | "
            f"{self.deliveries_per_s:,.0f} | "
            f"{self.latency_p50_ms:.1f} | {self.latency_p99_ms:.1f} |"
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run(
    kind: str,
    scenario: str,
    count: int,
    world: World,
    valkey: RedisServer,
    args: argparse.Namespace,
) -> Result:
    redis_url = valkey.url
    if valkey.process is None:
        raise RuntimeError("the Redis server is not running")
    process, port = start_server(kind, world, redis_url)
    clients = ClientPool(args.client_processes, str(ROOT))
    try:
        commands = world.commands(count if scenario == "distinct" else 1)
        targets = commands if scenario == "distinct" else commands * count
        query = f"?token={world.token}" if kind == "relay" else ""
        urls = [f"ws://127.0.0.1:{port}/ws/responses/{c}{query}" for c in targets]
        time.sleep(0.5)  # let the fresh process settle before the baseline RSS
        rss_before = _rss_kib(process.pid)
        redis_rss_before = _rss_kib(valkey.process.pid)
        started = time.perf_counter()
        handshakes, failed, errors = clients.connect(
            urls, concurrency=CONNECT_CONCURRENCY, open_timeout_s=120
        )
        connect_s = time.perf_counter() - started
        if errors:
            print(f"# {kind} {scenario} {count}: tries that failed: {errors}", flush=True)
        if failed:
            raise RuntimeError(f"{failed} of {count} clients could not connect")
        time.sleep(1.0)  # let the server's memory settle after the connect burst
        rss_per_conn = (_rss_kib(process.pid) - rss_before) / count
        redis_rss_per_conn = (_rss_kib(valkey.process.pid) - redis_rss_before) / count

        # Throughput: every command gets ``rounds`` events (distinct), or the shared one
        # ``shared_events`` events, each delivered to every client following it.
        rounds = args.rounds if scenario == "distinct" else args.shared_events
        clients.expect(rounds, record=False)
        started = time.perf_counter()
        for _ in range(rounds):
            world.publish(commands)
        received, _ = clients.wait(args.timeout)
        rate = received / (time.perf_counter() - started)
        # Latency: a steady trickle, one event at a time; on the shared command the gap
        # leaves room for one fan-out to finish before the next (0.3 ms per client).
        if scenario == "distinct":
            samples, gap_s = args.latency_events, args.latency_gap_ms / 1000
        else:
            samples, gap_s = (
                args.shared_latency_events,
                max(args.latency_gap_ms, count * 0.3) / 1000,
            )
        if scenario == "distinct":
            # Sample ``index`` goes to the client of ``commands[index % len(commands)]``.
            clients.expect_on([index % len(commands) for index in range(samples)], record=True)
        else:
            clients.expect(samples, record=True)
        for index in range(samples):
            world.publish([commands[index % len(commands)]])
            time.sleep(gap_s)  # the pace being measured at
        _, latencies = clients.wait(args.timeout)
        return Result(
            kind=kind,
            scenario=scenario,
            clients=count,
            connect_s=connect_s,
            handshakes_per_s=count / connect_s,
            handshake_p50_ms=statistics.median(handshakes),
            handshake_p99_ms=_percentile(handshakes, 99),
            rss_per_conn_kib=rss_per_conn,
            redis_rss_per_conn_kib=redis_rss_per_conn,
            deliveries_per_s=rate,
            latency_p50_ms=statistics.median(latencies),
            latency_p99_ms=_percentile(latencies, 99),
        )
    finally:
        clients.close()
        _stop(process)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _fd_limits(pid: int) -> str:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return f"{soft}/{hard}"
    return "?"


def hold(count: int, valkey: RedisServer, args: argparse.Namespace) -> None:
    """Open ``count`` sockets on one relay process and keep them; say what stopped it."""
    world = World.create(valkey.url)
    process, port = start_server("relay", world, valkey.url)
    clients = ClientPool(args.client_processes, str(ROOT))
    try:
        commands = world.commands(count)
        urls = [f"ws://127.0.0.1:{port}/ws/responses/{c}?token={world.token}" for c in commands]
        time.sleep(0.5)
        fds_before, rss_before = _fds(process.pid), _rss_kib(process.pid)
        started = time.perf_counter()
        handshakes, failed, errors = clients.connect(
            urls, concurrency=CONNECT_CONCURRENCY, open_timeout_s=args.hold_open_timeout
        )
        if errors:
            print(f"# hold {count}: tries that failed: {errors}", flush=True)
        connect_s = time.perf_counter() - started
        time.sleep(1.0)
        held = len(handshakes)
        try:
            status = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=10)
            connections = status.json().get("connections") if status.status_code == 200 else "?"
        except httpx.HTTPError:  # at the descriptor limit even the probe is refused
            connections = "probe refused (no descriptor left)"
        fds = _fds(process.pid)
        rss_per_conn = (_rss_kib(process.pid) - rss_before) / max(held, 1)
        print(
            f"| relay | hold | {count} | {held} held, {failed} not | {connections} | "
            f"{fds_before} → {fds} | {_fd_limits(process.pid)} | {rss_per_conn:.1f} | "
            f"{connect_s:.1f} |",
            flush=True,
        )
        # Everyone held is live: one event each arrives.
        clients.expect(1, record=False)
        world.publish(commands)
        received, _ = clients.wait(args.timeout)
        print(f"# hold: {received} of {held} held clients received a live event", flush=True)
    finally:
        clients.close()
        _stop(process)
        world.client.close()


def handshakes(count: int, valkey: RedisServer, args: argparse.Namespace) -> None:
    """Handshake rate only, relay and naive alternating for ``args.handshake_rounds``
    rounds (a fresh server each time), so a busy minute on the shared machine hits both
    alike; prints each round and the medians."""
    rates: dict[str, list[float]] = {"relay": [], "naive": []}
    for _ in range(args.handshake_rounds):
        for kind in ("relay", "naive"):
            world = World.create(valkey.url)
            process, port = start_server(kind, world, valkey.url)
            clients = ClientPool(args.client_processes, str(ROOT))
            try:
                query = f"?token={world.token}" if kind == "relay" else ""
                urls = [
                    f"ws://127.0.0.1:{port}/ws/responses/{c}{query}" for c in world.commands(count)
                ]
                time.sleep(0.5)  # let the fresh process settle
                started = time.perf_counter()
                times, failed, errors = clients.connect(
                    urls, concurrency=CONNECT_CONCURRENCY, open_timeout_s=120
                )
                rate = len(times) / (time.perf_counter() - started)
                rates[kind].append(rate)
                print(
                    f"| {kind} | {count} | {rate:,.0f} | {statistics.median(times):.0f} / "
                    f"{_percentile(times, 99):.0f} | {failed} | {sum(errors.values())} |",
                    flush=True,
                )
            finally:
                clients.close()
                _stop(process)
                world.client.close()
    relay, naive = statistics.median(rates["relay"]), statistics.median(rates["naive"])
    print(
        f"# {count} clients, {args.handshake_rounds} rounds: median handshakes/s relay "
        f"{relay:,.0f}, naive {naive:,.0f}, relay / naive {relay / naive:.2f}",
        flush=True,
    )


def storm(count: int, valkey: RedisServer, args: argparse.Namespace) -> None:
    """``count`` clients follow their own command while events are published; the relay
    restarts (SIGTERM, a new process on the same port); every client reconnects with
    ``since`` and must end with every event exactly once."""
    world = World.create(valkey.url)
    process, port = start_server("relay", world, valkey.url)
    clients = ClientPool(args.client_processes, str(ROOT))
    stop = threading.Event()
    published = [0]

    def publisher(commands: list[str]) -> None:
        while not stop.is_set():
            world.publish(commands)
            published[0] += 1
            stop.wait(args.storm_period_s)  # the pace of the background publisher

    try:
        commands = world.commands(count)
        urls = [f"ws://127.0.0.1:{port}/ws/responses/{c}?token={world.token}" for c in commands]
        started = time.perf_counter()
        clients.storm(urls, concurrency=CONNECT_CONCURRENCY)
        print(f"# storm: {count} clients live in {time.perf_counter() - started:.1f} s", flush=True)
        thread = threading.Thread(target=publisher, args=(commands,), daemon=True)
        thread.start()
        time.sleep(2 * args.storm_period_s)
        clients.mark()
        restart = time.perf_counter()
        _stop(process)
        down_s = time.perf_counter() - restart
        process, _ = start_server("relay", world, valkey.url, port=port)
        up_s = time.perf_counter() - restart
        back_s = None
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            state = clients.status()
            if state["back"] == count:
                back_s = time.perf_counter() - restart
                break
            time.sleep(0.1)  # polling the clients' progress
        time.sleep(2 * args.storm_period_s)
        stop.set()
        thread.join()
        total = sum(world.seqs[c] for c in commands)
        while time.monotonic() < deadline and clients.status()["received"] < total:
            time.sleep(0.1)  # the last events are in flight
        report = clients.report({c: world.seqs[c] for c in commands})
        state = clients.status()
        print(
            "| clients | events published | old relay stopped s | new relay ready s | "
            "all back live s | reconnect attempts refused | lost | duplicates | "
            "out of order | clients complete |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        print(
            f"| {count} | {total} | {down_s:.1f} | {up_s:.1f} | "
            f"{'—' if back_s is None else f'{back_s:.1f}'} | {state['refused']} | "
            f"{report['lost']} | {report['duplicates']} | {report['out_of_order']} | "
            f"{report['complete_clients']} |",
            flush=True,
        )
    finally:
        stop.set()
        clients.close()
        _stop(process)
        world.client.close()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-naive":
        serve_naive(int(sys.argv[2]), sys.argv[3])
        return
    if sys.argv[1:] == ["--serve-relay"]:  # python -m realtime (it raises its fd limit)
        from realtime.__main__ import main as realtime_main

        realtime_main()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--kinds", nargs="+", default=["relay", "naive"])
    parser.add_argument("--scenarios", nargs="+", default=["distinct", "shared"])
    parser.add_argument(
        "--naive-max",
        type=int,
        default=4000,
        help="largest client count for the naive relay (one Redis connection per socket)",
    )
    parser.add_argument("--rounds", type=int, default=20, help="events per command, distinct")
    parser.add_argument("--shared-events", type=int, default=20, help="events, shared")
    parser.add_argument("--latency-events", type=int, default=200)
    parser.add_argument("--shared-latency-events", type=int, default=20)
    parser.add_argument("--latency-gap-ms", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--client-processes", type=int, default=3, help="processes holding the client sockets"
    )
    parser.add_argument("--hold", type=int, nargs="*", default=[], help="hold N on one relay")
    parser.add_argument("--hold-open-timeout", type=float, default=30.0)
    parser.add_argument(
        "--storm", type=int, nargs="*", default=[], help="reconnect storm of N clients"
    )
    parser.add_argument("--storm-period-s", type=float, default=1.0, help="between rounds")
    parser.add_argument(
        "--handshake-rounds",
        type=int,
        default=0,
        help="only handshakes: this many alternating relay/naive rounds per --clients",
    )
    args = parser.parse_args()
    fd_limit = _raise_fd_limit()
    server = RedisServer()
    server.start()
    probe = redis.Redis.from_url(server.url)
    probe.config_set("maxclients", fd_limit - 32)  # what Valkey allows under this fd limit
    probe.close()
    try:
        print(f"# fd limit {fd_limit}, {os.cpu_count()} cores")
        if args.hold:
            print(
                "| server | mode | clients asked | clients | relay counts | relay fds | "
                "relay fd limit (soft/hard) | server RSS KiB per connection | connect s |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            for count in args.hold:
                hold(count, server, args)
        for count in args.storm:
            storm(count, server, args)
        if args.handshake_rounds:
            print(
                "| server | clients | handshakes/s | handshake p50 / p99 ms | clients failed | "
                "tries failed |"
            )
            print("|---|---|---|---|---|---|")
            for count in args.clients:
                handshakes(count, server, args)
        if args.hold or args.storm or args.handshake_rounds:
            return
        print(
            "| server | scenario | clients | connect all s | handshakes/s | "
            "handshake p50 / p99 ms | "
            "server RSS KiB per connection | Redis RSS KiB per connection | deliveries/s | "
            "publish→client p50 ms | p99 ms |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for count in args.clients:
            for kind in args.kinds:
                if kind == "naive" and count > args.naive_max:
                    print(f"| naive | — | {count} | skipped: one Redis connection per socket |")
                    continue
                for scenario in args.scenarios:
                    world = World.create(server.url)
                    result = run(kind, scenario, count, world, server, args)
                    print(result.row(), flush=True)
                    world.client.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
