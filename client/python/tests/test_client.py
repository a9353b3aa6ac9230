"""The sync Client against the real rebound-server and the real fake-lms."""

from __future__ import annotations

import grpc
import pytest

from rebound_client import (
    AlreadyExists,
    Client,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    is_terminal,
    pb2,
)
from support import FakeLms, ReboundServer, job


def test_resubmitting_the_same_job_returns_it_deduplicated(
    client: Client, tenant: str, lms: FakeLms
) -> None:
    key = f"{tenant}-1"
    first = client.submit(job(key))
    assert first.job_id and not first.deduplicated

    again = client.submit(job(key))
    assert (again.job_id, again.deduplicated) == (first.job_id, True)
    with pytest.raises(AlreadyExists) as caught:
        client.submit(job(key, body='{"score": 50}'))
    assert first.job_id in caught.value.message

    assert client.await_terminal(first.job_id, timeout=20).state == pb2.SUCCEEDED
    assert lms.stats(key)["effects"] == 1


def test_await_terminal_returns_the_job_with_its_attempt_history(
    client: Client, tenant: str
) -> None:
    accepted = client.submit(job(f"{tenant}-1", "503,503,200", labels={"pipeline": "gradebook"}))

    done = client.await_terminal(accepted.job_id, timeout=20)

    assert done.state == pb2.SUCCEEDED
    assert [a.http_status for a in done.attempts] == [503, 503, 200]
    assert done.tenant == tenant
    assert dict(done.request.labels) == {"pipeline": "gradebook"}
    assert client.get(accepted.job_id) == done


def test_watch_yields_every_state_until_the_terminal_one(client: Client, tenant: str) -> None:
    accepted = client.submit(job(f"{tenant}-1", "503,200"))

    states = [event.state for event in client.watch(accepted.job_id, timeout=20)]

    assert states[-1] == pb2.SUCCEEDED
    assert pb2.WAITING_RETRY in states
    assert not any(is_terminal(s) for s in states[:-1])


def test_a_waiting_job_times_out_await_terminal_and_can_be_cancelled(
    client: Client, tenant: str
) -> None:
    # 503 with Retry-After 600 s, clamped to the policy's max_retry_after (5 s): it waits.
    accepted = client.submit(job(f"{tenant}-1", "503:ra=600,200"))
    with pytest.raises(DeadlineExceeded) as caught:
        client.await_terminal(accepted.job_id, timeout=0.3)
    assert "not terminal" in caught.value.message

    assert client.cancel(accepted.job_id).state == pb2.CANCELLED
    with pytest.raises(FailedPrecondition):
        client.cancel(accepted.job_id)


def test_list_filters_by_label_and_state_and_follows_pages(client: Client, tenant: str) -> None:
    labelled = [client.submit(job(f"{tenant}-{i}", labels={"run": "r1"})).job_id for i in range(5)]
    other = client.submit(job(f"{tenant}-other")).job_id
    for job_id in labelled + [other]:
        client.await_terminal(job_id, timeout=20)

    first_page = client.list(label="run=r1", page_size=2)
    assert len(first_page.jobs) == 2 and first_page.next_page_token
    listed = [j.job_id for j in client.list_all(label="run=r1", page_size=2)]
    assert sorted(listed) == sorted(labelled)
    assert len({j.job_id for j in client.list_all(states=[pb2.SUCCEEDED])}) == 6
    assert list(client.list_all(states=[pb2.FAILED, pb2.EXHAUSTED])) == []


def test_replay_sends_a_dead_lettered_job_again(client: Client, tenant: str) -> None:
    # 400 is permanent: FAILED at once; the LMS answers 200 to the replayed attempt.
    accepted = client.submit(job(f"{tenant}-1", "400,200"))
    assert client.await_terminal(accepted.job_id, timeout=20).state == pb2.FAILED
    dead_letters = client.list(states=[pb2.FAILED, pb2.EXHAUSTED]).jobs
    assert [j.job_id for j in dead_letters] == [accepted.job_id]

    assert client.replay(accepted.job_id).state == pb2.QUEUED
    done = client.await_terminal(accepted.job_id, timeout=20)
    assert done.state == pb2.SUCCEEDED
    with pytest.raises(FailedPrecondition):
        client.replay(accepted.job_id)


def test_an_operator_pause_holds_jobs_until_resumed(client: Client, tenant: str) -> None:
    assert [e.name for e in client.endpoint_status()] == ["lms", "slow", "canvas", "dead"]

    paused = client.pause_endpoint("canvas", reason="LMS maintenance", duration=60)
    assert paused.operator_paused and paused.operator_reason == "LMS maintenance"
    try:
        accepted = client.submit(job(f"{tenant}-1", endpoint="canvas"))
        for event in client.watch(accepted.job_id, timeout=20):
            if event.wait.reason == pb2.OPERATOR_PAUSED:
                break
        assert client.endpoint_status("canvas").operator_paused
    finally:
        resumed = client.resume_endpoint("canvas")
    assert not resumed.operator_paused
    assert client.await_terminal(accepted.job_id, timeout=20).state == pb2.SUCCEEDED
    with pytest.raises(FailedPrecondition):
        client.resume_endpoint("canvas")


def test_errors_are_typed_and_invalid_arguments_name_their_field(
    client: Client, tenant: str, server: ReboundServer
) -> None:
    with pytest.raises(NotFound) as not_found:
        client.get("j999999999")
    assert not_found.value.code == grpc.StatusCode.NOT_FOUND and not_found.value.field is None

    cases = [
        (lambda: client.get("not-a-job-id"), "job_id"),
        (lambda: client.submit(job(f"{tenant}-1", path="/admin")), "request.path"),
        (lambda: client.submit(job(f"{tenant}-2", endpoint="nope")), "request.endpoint"),
        (lambda: client.submit(job("")), "request.idempotency_key"),
        (
            lambda: client.submit(job(f"{tenant}-3", headers={"X-Forwarded-Host": "evil.example"})),
            "request.headers[0].name",
        ),
    ]
    for call, field in cases:
        with pytest.raises(InvalidArgument) as invalid:
            call()
        assert invalid.value.field == field, invalid.value.message

    with Client(server.target, tenant="not a tenant") as stranger:
        with pytest.raises(InvalidArgument) as bad_tenant:
            stranger.list()
    assert "x-rebound-tenant" in bad_tenant.value.message and bad_tenant.value.field is None
    with pytest.raises(NotFound):
        client.endpoint_status("nope")
