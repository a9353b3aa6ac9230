"""The asyncio AsyncClient against the real rebound-server and fake-lms: the main paths."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import pytest

from rebound_client import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    pb2,
)
from rebound_client.aio import AsyncClient
from support import ReboundServer, job


def run(server: ReboundServer, tenant: str, body: Callable[[AsyncClient], Awaitable[None]]) -> None:
    async def main() -> None:
        async with AsyncClient(server.target, tenant=tenant) as client:
            await body(client)

    asyncio.run(main())


def test_submit_watch_and_await_terminal(server: ReboundServer, tenant: str) -> None:
    async def body(client: AsyncClient) -> None:
        accepted = await client.submit(job(f"{tenant}-1", "503,200"))
        again = await client.submit(job(f"{tenant}-1", "503,200"))
        assert again.deduplicated and again.job_id == accepted.job_id
        with pytest.raises(AlreadyExists):
            await client.submit(job(f"{tenant}-1", "200"))

        states = [event.state async for event in client.watch(accepted.job_id, timeout=20)]
        assert states[-1] == pb2.SUCCEEDED and pb2.WAITING_RETRY in states

        done = await client.await_terminal(accepted.job_id, timeout=20)
        assert [a.http_status for a in done.attempts] == [503, 200]
        assert (await client.get(accepted.job_id)).state == pb2.SUCCEEDED
        listed = await client.list(states=[pb2.SUCCEEDED])
        assert [j.job_id for j in listed.jobs] == [accepted.job_id]

    run(server, tenant, body)


def test_submit_many_over_the_stream(server: ReboundServer, tenant: str) -> None:
    async def jobs():
        for i in range(100):
            yield job(f"{tenant}-{i}", endpoint="nope") if i % 25 == 0 else job(f"{tenant}-{i}")

    async def body(client: AsyncClient) -> None:
        results = {r.index: r async for r in client.submit_many(jobs(), window=16)}
        assert sorted(results) == list(range(100))
        for index, result in results.items():
            if index % 25 == 0:
                assert isinstance(result.error, InvalidArgument)
                assert result.error.field == "request.endpoint"
            else:
                assert result.ok and result.job_id
        assert len({r.job_id for r in results.values() if r.ok}) == 96
        done = await client.await_terminal(results[1].job_id, timeout=20)
        assert done.state == pb2.SUCCEEDED

    run(server, tenant, body)


def test_cancel_replay_and_typed_errors(server: ReboundServer, tenant: str) -> None:
    async def body(client: AsyncClient) -> None:
        waiting = await client.submit(job(f"{tenant}-wait", "503:ra=600,200"))
        with pytest.raises(DeadlineExceeded):
            await client.await_terminal(waiting.job_id, timeout=0.3)
        assert (await client.cancel(waiting.job_id)).state == pb2.CANCELLED
        with pytest.raises(FailedPrecondition):
            await client.cancel(waiting.job_id)

        refused = await client.submit(job(f"{tenant}-refused", "400,200"))
        assert (await client.await_terminal(refused.job_id, timeout=20)).state == pb2.FAILED
        assert (await client.replay(refused.job_id)).state == pb2.QUEUED
        assert (await client.await_terminal(refused.job_id, timeout=20)).state == pb2.SUCCEEDED

        with pytest.raises(NotFound):
            await client.get("j999999999")
        with pytest.raises(InvalidArgument) as invalid:
            await client.submit(job(f"{tenant}-bad", path="/admin"))
        assert invalid.value.field == "request.path"

    run(server, tenant, body)


def test_endpoint_status_pause_and_resume(server: ReboundServer, tenant: str) -> None:
    async def body(client: AsyncClient) -> None:
        assert [e.name for e in await client.endpoint_status()] == ["lms", "slow", "canvas", "dead"]
        try:
            paused = await client.pause_endpoint("canvas", reason="maintenance")
            assert paused.operator_paused and not paused.HasField("operator_paused_until")
        finally:
            resumed = await client.resume_endpoint("canvas")
        assert not resumed.operator_paused
        assert not (await client.endpoint_status("canvas")).operator_paused
        with pytest.raises(NotFound):
            await client.endpoint_status("nope")

    run(server, tenant, body)
