"""Retries of submits: the schedule (fake clock and sleep against a scripted server, nothing
sleeps), and the two real cases against real processes: a server that is not up yet, and one
refusing submits for too many active jobs."""

from __future__ import annotations

import pathlib
import random
import time
from typing import Iterator

import grpc
import pytest

from rebound_client import (
    NO_RETRY,
    Client,
    InvalidArgument,
    ResourceExhausted,
    RetryPolicy,
    Unavailable,
    pb2,
)
from rebound_client.errors import error_for
from rebound_client.retry import retry_delay
from fake_rebound import FakeServer, FakeTime
from support import FakeLms, ReboundServer, integration_config, job, unused_port


class UpperBound(random.Random):
    """Jitter pinned at the top of its range."""

    def uniform(self, a: float, b: float) -> float:
        return b


class LowerBound(random.Random):
    """Jitter pinned at the bottom of its range."""

    def uniform(self, a: float, b: float) -> float:
        return a


POLICY = RetryPolicy(
    max_attempts=5, initial_backoff=0.1, max_backoff=0.3, multiplier=2, max_elapsed=10
)
KEYED = pb2.SyncRequest(idempotency_key="k")
UNAVAILABLE = error_for(grpc.StatusCode.UNAVAILABLE, "down")


def test_backoff_doubles_up_to_its_cap_with_half_of_it_jittered() -> None:
    highest = [POLICY.backoff(n, UpperBound()) for n in range(1, 5)]
    assert highest == pytest.approx([0.1, 0.2, 0.3, 0.3])
    lowest = [POLICY.backoff(n, LowerBound()) for n in range(1, 5)]
    assert lowest == pytest.approx([0.05, 0.1, 0.15, 0.15])


def test_only_unavailable_and_resource_exhausted_submits_with_a_key_are_retried() -> None:
    def delay(error_code: grpc.StatusCode, request: pb2.SyncRequest) -> object:
        error = error_for(error_code, "x")
        return retry_delay(POLICY, error, request, 1, 0.0, 0.0, UpperBound())

    assert delay(grpc.StatusCode.UNAVAILABLE, KEYED) == pytest.approx(0.1)
    assert delay(grpc.StatusCode.RESOURCE_EXHAUSTED, KEYED) == pytest.approx(0.1)
    assert delay(grpc.StatusCode.UNAVAILABLE, pb2.SyncRequest()) is None
    for code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS,
                 grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL):
        assert delay(code, KEYED) is None


def test_retries_stop_at_max_attempts_and_at_max_elapsed() -> None:
    assert retry_delay(POLICY, UNAVAILABLE, KEYED, 4, 0.0, 0.0, UpperBound()) == pytest.approx(0.3)
    assert retry_delay(POLICY, UNAVAILABLE, KEYED, 5, 0.0, 0.0, UpperBound()) is None
    # First attempt at 0: after a failure at 9.8, a retry 0.3 later would start after
    # max_elapsed (10); after one at 9.6, it starts in time.
    assert retry_delay(POLICY, UNAVAILABLE, KEYED, 3, 0.0, 9.8, UpperBound()) is None
    assert retry_delay(POLICY, UNAVAILABLE, KEYED, 3, 0.0, 9.6, UpperBound()) == pytest.approx(0.3)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.stop()


def scripted_client(fake: FakeServer, time_: FakeTime, policy: RetryPolicy = POLICY) -> Client:
    return Client(fake.target, retry=policy, clock=time_.clock, sleep=time_.sleep, rng=UpperBound())


def test_a_submit_failing_unavailable_then_resource_exhausted_is_retried_on_schedule(
    fake: FakeServer
) -> None:
    fake.rebound.submit_errors = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED]
    time_ = FakeTime()
    with scripted_client(fake, time_) as client:
        accepted = client.submit(job("k1"))
    assert accepted.job_id == "j3" and fake.rebound.submit_calls == 3
    assert time_.sleeps == pytest.approx([0.1, 0.2])


def test_a_submit_gives_up_after_max_attempts_with_the_last_error(fake: FakeServer) -> None:
    fake.rebound.submit_errors = [grpc.StatusCode.UNAVAILABLE] * 10
    time_ = FakeTime()
    with scripted_client(fake, time_) as client, pytest.raises(Unavailable):
        client.submit(job("k1"))
    assert fake.rebound.submit_calls == 5
    assert time_.sleeps == pytest.approx([0.1, 0.2, 0.3, 0.3])


def test_a_submit_gives_up_before_a_retry_would_pass_max_elapsed(fake: FakeServer) -> None:
    fake.rebound.submit_errors = [grpc.StatusCode.UNAVAILABLE] * 10
    time_ = FakeTime()
    policy = RetryPolicy(max_attempts=10, initial_backoff=0.1, max_backoff=0.3, max_elapsed=0.5)
    with scripted_client(fake, time_, policy) as client, pytest.raises(Unavailable):
        client.submit(job("k1"))
    # 0.1 + 0.2 = 0.3 elapsed; the next 0.3 would end at 0.6 > 0.5.
    assert time_.sleeps == pytest.approx([0.1, 0.2])
    assert fake.rebound.submit_calls == 3


def test_a_submit_without_an_idempotency_key_is_not_retried(fake: FakeServer) -> None:
    fake.rebound.submit_errors = [grpc.StatusCode.UNAVAILABLE]
    time_ = FakeTime()
    with scripted_client(fake, time_) as client, pytest.raises(Unavailable):
        client.submit(job(""))
    assert fake.rebound.submit_calls == 1 and time_.sleeps == []


def test_a_submit_is_retried_until_the_server_has_started(
    lms: FakeLms, tmp_path: pathlib.Path, tenant: str
) -> None:
    port = unused_port()
    started: list[ReboundServer] = []
    delays: list[float] = []

    def sleep_starting_the_server(seconds: float) -> None:
        # The first attempt found nothing listening; the server comes up during the backoff.
        delays.append(seconds)
        if not started:
            config = integration_config(
                lms.port, unused_port(), tmp_path / "late.db", grpc_port=port
            )
            started.append(ReboundServer(tmp_path, config, name="late"))
        time.sleep(seconds)

    policy = RetryPolicy(max_attempts=20, initial_backoff=0.05, max_backoff=0.5, max_elapsed=20)
    client = Client(
        f"127.0.0.1:{port}", tenant=tenant, retry=policy, sleep=sleep_starting_the_server
    )
    try:
        accepted = client.submit(job(f"{tenant}-1"))
        assert accepted.job_id and len(delays) >= 1
        assert client.await_terminal(accepted.job_id, timeout=20).state == pb2.SUCCEEDED
    finally:
        client.close()
        for server in started:
            assert server.stop() == 0


@pytest.fixture
def crowded_server(lms: FakeLms, tmp_path: pathlib.Path) -> Iterator[ReboundServer]:
    """A server that holds at most two unfinished jobs."""
    config = integration_config(
        lms.port, unused_port(), tmp_path / "crowded.db", extra_server="  max_active_jobs: 2\n"
    )
    server = ReboundServer(tmp_path, config, name="crowded")
    yield server
    assert server.stop() == 0


PATIENT = RetryPolicy(max_attempts=50, initial_backoff=0.05, max_backoff=0.2, max_elapsed=20)


def test_submits_refused_for_too_many_active_jobs_are_retried_until_there_is_room(
    crowded_server: ReboundServer, tenant: str
) -> None:
    # Each job takes 1 s at the LMS, so the first two hold the server full while the third waits.
    slow = [job(f"{tenant}-{i}", "200:ms=1000") for i in range(3)]
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        time.sleep(seconds)

    with Client(crowded_server.target, tenant=tenant, retry=PATIENT, sleep=sleep) as client:
        first, second = client.submit(slow[0]), client.submit(slow[1])
        with pytest.raises(ResourceExhausted):
            client.submit(slow[2], retry=NO_RETRY)
        assert delays == []

        third = client.submit(slow[2])

        assert delays and len({first.job_id, second.job_id, third.job_id}) == 3
        assert client.await_terminal(third.job_id, timeout=20).state == pb2.SUCCEEDED
        slept = len(delays)
        with pytest.raises(InvalidArgument):
            client.submit(job(f"{tenant}-bad", path="/admin"))
        assert len(delays) == slept
