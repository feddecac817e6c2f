"""The three processes (api, worker, realtime) started as separate OS processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import TEST_JWT_SECRET
from tests.support import Stack, running_stack

__all__ = ["Stack"]


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        redis_url,
        tmp_path_factory.mktemp("e2e-logs"),
        jwt_secret=TEST_JWT_SECRET,
        env={"SOVD_SIM_DELAY_SCALE": "0.02", "SOVD_SIM_SEED": "7"},
    ) as stack:
        yield stack
