"""submit_many over the real server's SubmitSyncStream."""

from __future__ import annotations

import pathlib
import time
from typing import Iterator

import pytest

from rebound_client import Client, InvalidArgument, RetryPolicy, pb2
from support import FakeLms, ReboundServer, integration_config, job, unused_port


def test_the_valid_jobs_are_accepted_and_the_invalid_ones_name_their_field(
    client: Client, tenant: str
) -> None:
    # Every tenth job asks for a path outside the endpoint's allowed prefixes.
    jobs = [
        job(f"{tenant}-{i}", path="/admin") if i % 10 == 0 else job(f"{tenant}-{i}")
        for i in range(500)
    ]

    results = {r.index: r for r in client.submit_many(iter(jobs), window=64)}

    assert sorted(results) == list(range(500))
    invalid = [r for r in results.values() if not r.ok]
    assert sorted(r.index for r in invalid) == list(range(0, 500, 10))
    for result in invalid:
        assert isinstance(result.error, InvalidArgument) and result.error.field == "request.path"
        assert result.response is None
    accepted = [r for r in results.values() if r.ok]
    assert len({r.job_id for r in accepted}) == 450
    assert all(r.request.idempotency_key == f"{tenant}-{r.index}" for r in accepted)
    assert not any(r.deduplicated for r in accepted)

    # The same jobs again are the same jobs.
    again = {r.index: r for r in client.submit_many(jobs[1:10], window=4)}
    assert all(again[i - 1].deduplicated for i in range(1, 10))
    assert all(again[i - 1].job_id == results[i].job_id for i in range(1, 10))
    assert client.await_terminal(results[1].job_id, timeout=20).state == pb2.SUCCEEDED


def test_a_key_reused_with_another_request_comes_back_with_the_existing_job(
    client: Client, tenant: str
) -> None:
    existing = client.submit(job(f"{tenant}-1"))

    (result,) = client.submit_many([job(f"{tenant}-1", body='{"score": 50}')])

    assert not result.ok and result.error.code.name == "ALREADY_EXISTS"
    assert result.job_id == existing.job_id


@pytest.fixture
def crowded_server(lms: FakeLms, tmp_path: pathlib.Path) -> Iterator[ReboundServer]:
    """A server that holds at most three unfinished jobs."""
    config = integration_config(
        lms.port, unused_port(), tmp_path / "crowded.db", extra_server="  max_active_jobs: 3\n"
    )
    server = ReboundServer(tmp_path, config, name="crowded")
    yield server
    assert server.stop() == 0


def test_jobs_refused_for_too_many_active_jobs_are_resent_until_there_is_room(
    crowded_server: ReboundServer, tenant: str
) -> None:
    # Each takes 300 ms at the LMS: the server has room for three at a time.
    jobs = [job(f"{tenant}-{i}", "200:ms=300") for i in range(8)]
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        time.sleep(seconds)

    policy = RetryPolicy(max_attempts=50, initial_backoff=0.05, max_backoff=0.2, max_elapsed=20)
    with Client(crowded_server.target, tenant=tenant, retry=policy, sleep=sleep) as client:
        results = list(client.submit_many(jobs))
        assert sorted(r.index for r in results) == list(range(8))
        assert all(r.ok for r in results), [str(r.error) for r in results if not r.ok]
        assert delays and max(r.attempts for r in results) > 1
        for result in results:
            assert client.await_terminal(result.job_id, timeout=20).state == pb2.SUCCEEDED
