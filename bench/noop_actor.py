"""A stock Dramatiq no-op actor on a plain ``RedisBroker``: the ceiling the worker is
compared with. Run by ``bench.throughput`` as ``dramatiq bench.noop_actor`` with the same
processes and threads as the worker; ``BENCH_REDIS_URL`` and ``BENCH_NAMESPACE`` say where.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

__all__ = ["QUEUE", "broker", "noop"]

QUEUE = "noop"

broker = RedisBroker(
    url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    namespace=os.environ.get("BENCH_NAMESPACE", "bench-noop"),
)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop(n: int) -> None:
    """Nothing: what is left is Dramatiq's own fetch, dispatch and ack."""
