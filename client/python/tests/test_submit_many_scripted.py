"""submit_many's stream handling, sync and asyncio, against a scripted server: answers out of
order, a stream that breaks half way (its unanswered jobs are resent on a new stream after a
backoff, nothing sleeps), per-job retryable errors, and stream errors that stop the batch."""

from __future__ import annotations

import asyncio
import random
from typing import Iterator

import grpc
import pytest

from rebound_client import Client, RetryPolicy, SubmitResult, Unauthenticated, Unavailable
from rebound_client._batch import Batch
from rebound_client.aio import AsyncClient
from rebound_client.errors import ReboundError
from rebound_client import pb2
from fake_rebound import FakeServer, FakeTime, StreamScript
from support import job

POLICY = RetryPolicy(max_attempts=3, initial_backoff=0.1, max_backoff=1.0, max_elapsed=10)
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]


class UpperBound(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.stop()


def scripted_client(fake: FakeServer, time_: FakeTime) -> Client:
    return Client(
        fake.target, retry=POLICY, clock=time_.clock, sleep=time_.sleep, rng=UpperBound()
    )


def run_sync(
    fake: FakeServer, jobs: list[dict], time_: FakeTime, window: int = 256
) -> list[SubmitResult]:
    with scripted_client(fake, time_) as client:
        return list(client.submit_many(jobs, window=window))


def run_async(
    fake: FakeServer, jobs: list[dict], time_: FakeTime, window: int = 256
) -> list[SubmitResult]:
    async def main() -> list[SubmitResult]:
        async def generated():  # an async iterable, as a pipeline would give
            for request in jobs:
                yield request

        async with AsyncClient(
            fake.target, retry=POLICY, clock=time_.clock, sleep=time_.async_sleep, rng=UpperBound()
        ) as client:
            return [result async for result in client.submit_many(generated(), window=window)]

    return asyncio.run(main())


@pytest.fixture(params=[run_sync, run_async], ids=["sync", "asyncio"])
def submit_many(request: pytest.FixtureRequest):
    return request.param


def by_index(results: list[SubmitResult]) -> dict[int, SubmitResult]:
    indexed = {r.index: r for r in results}
    assert len(indexed) == len(results), "one result per job"
    return indexed


def test_answers_in_any_order_are_matched_to_their_jobs(fake: FakeServer, submit_many) -> None:
    fake.rebound.streams = [StreamScript(reverse=True)]
    jobs = [job(f"k{i}") for i in range(20)]

    results = submit_many(fake, jobs, FakeTime(), window=20)

    assert [r.index for r in results] == list(range(19, -1, -1))
    for index, result in by_index(results).items():
        assert result.ok and result.job_id == f"j{index + 1}" and result.attempts == 1
        assert result.request.idempotency_key == f"k{index}"


def test_a_job_error_is_its_result_and_does_not_stop_the_others(
    fake: FakeServer, submit_many
) -> None:
    fake.rebound.streams = [
        StreamScript(code_of=lambda r: INVALID_ARGUMENT if r.path == "/admin" else 0)
    ]
    jobs = [job(f"k{i}", path="/admin") if i % 3 == 0 else job(f"k{i}") for i in range(30)]

    results = by_index(submit_many(fake, jobs, FakeTime(), window=4))

    assert sorted(results) == list(range(30))
    assert all(results[i].ok == (i % 3 != 0) for i in results)
    assert all(results[i].error.code == grpc.StatusCode.INVALID_ARGUMENT for i in range(0, 30, 3))


def test_jobs_left_unanswered_by_a_broken_stream_are_resent_after_a_backoff(
    fake: FakeServer, submit_many
) -> None:
    fake.rebound.streams = [StreamScript(break_after=5), StreamScript()]
    jobs = [job(f"k{i}") for i in range(12)]
    time_ = FakeTime()

    results = by_index(submit_many(fake, jobs, time_, window=1))

    assert sorted(results) == list(range(12)) and all(r.ok for r in results.values())
    first, second = fake.rebound.received
    assert first == [0, 1, 2, 3, 4]
    # The sixth job was sent into the breaking stream: resent first, then the rest.
    assert second == list(range(5, 12))
    assert results[5].attempts == 2 and results[6].attempts == 1
    assert time_.sleeps == pytest.approx([0.1])


def test_jobs_answered_unavailable_are_resent_until_their_attempts_are_used_up(
    fake: FakeServer, submit_many
) -> None:
    # k1 is refused in every round; k2 only in the first.
    rounds = {"k2": 1}

    def code_of(request: pb2.SyncRequest) -> int:
        if request.idempotency_key == "k1":
            return UNAVAILABLE
        if rounds.get(request.idempotency_key, 0) > 0:
            rounds[request.idempotency_key] -= 1
            return UNAVAILABLE
        return 0

    fake.rebound.streams = [StreamScript(code_of=code_of)]
    time_ = FakeTime()

    results = by_index(submit_many(fake, [job("k0"), job("k1"), job("k2"), job("")], time_))

    assert results[0].ok and results[0].attempts == 1
    assert isinstance(results[1].error, Unavailable) and results[1].attempts == POLICY.max_attempts
    assert results[2].ok and results[2].attempts == 2
    # Without a key, not retried (the scripted server accepts it anyway).
    assert results[3].ok and results[3].attempts == 1
    assert [len(r) for r in fake.rebound.received] == [4, 2, 1]
    assert time_.sleeps == pytest.approx([0.1, 0.2])


def test_jobs_of_one_ordering_key_reach_the_server_in_order_retries_included(
    fake: FakeServer, submit_many
) -> None:
    refused_once = {"a"}

    def code_of(request: pb2.SyncRequest) -> int:
        if request.idempotency_key in refused_once:
            refused_once.remove(request.idempotency_key)
            return UNAVAILABLE
        return 0

    fake.rebound.streams = [StreamScript(code_of=code_of)]
    jobs = [
        job("a", ordering_key="student-42"),
        job("b", ordering_key="student-42"),
        job("c"),
        job("d", ordering_key="student-42"),
    ]

    results = by_index(submit_many(fake, jobs, FakeTime()))

    assert all(r.ok for r in results.values()) and results[0].attempts == 2
    # b and d wait behind a, which is refused in the first round and accepted in the second.
    assert fake.rebound.received == [[0, 2], [0, 1, 3]]


def test_a_stream_error_that_retrying_cannot_fix_stops_the_batch(fake: FakeServer) -> None:
    fake.rebound.streams = [StreamScript(abort_at_once=grpc.StatusCode.UNAUTHENTICATED)]
    time_ = FakeTime()
    with Client(fake.target, retry=POLICY, clock=time_.clock, sleep=time_.sleep) as client:
        with pytest.raises(Unauthenticated):
            list(client.submit_many([job("k0")]))
    assert time_.sleeps == []


def test_a_stream_that_keeps_breaking_is_given_up_after_max_attempts(fake: FakeServer) -> None:
    fake.rebound.streams = [StreamScript(abort_at_once=grpc.StatusCode.UNAVAILABLE)]
    time_ = FakeTime()
    results: list[SubmitResult] = []
    with scripted_client(fake, time_) as client:
        with pytest.raises(Unavailable):
            for result in client.submit_many([job("k0"), job("k1")]):
                results.append(result)
    assert len(fake.rebound.received) == POLICY.max_attempts
    assert time_.sleeps == pytest.approx([0.1, 0.2])
    # Whatever was sent into the failing streams comes back with the error.
    assert all(isinstance(r.error, Unavailable) for r in results)


def test_an_answer_for_a_sequence_never_sent_is_a_protocol_error() -> None:
    batch = Batch(POLICY, random.Random(1))
    batch.start_round()
    batch.sent(batch.new_job(job("k0")), now=0.0)
    with pytest.raises(ReboundError) as caught:
        batch.answered(pb2.SubmitSyncStreamResponse(sequence=7))
    assert caught.value.code == grpc.StatusCode.INTERNAL


def test_a_stream_that_ends_ok_with_jobs_unanswered_is_a_protocol_error() -> None:
    batch = Batch(POLICY, random.Random(1))
    batch.start_round()
    batch.sent(batch.new_job(job("k0")), now=0.0)
    batch.source_done = True
    end = batch.finish_round(now=0.0)
    assert end.error is not None and end.error.code == grpc.StatusCode.INTERNAL
    assert [r.index for r in end.results] == [0] and not end.results[0].ok
