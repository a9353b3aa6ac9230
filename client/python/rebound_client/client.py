"""The synchronous Python client of the Rebound API (proto/rebound/v1/rebound.proto).

    from rebound_client import Client

    with Client("127.0.0.1:50051", tenant="district-7") as rebound:
        accepted = rebound.submit({"idempotency_key": "grade-7-3-42-v1", "endpoint": "canvas",
                                   "method": "PUT", "path": "/api/v1/courses/7/...",
                                   "body": '{"submission": {"posted_grade": "A-"}}'})
        job = rebound.await_terminal(accepted.job_id, timeout=60)

One Client owns one gRPC channel. It is thread-safe (gRPC channels and stubs are; the client
keeps no per-call state), so share one per process and target. Every method raises a typed
`ReboundError` (rebound_client.errors) instead of grpc.RpcError, and returns the API's messages
(rebound_client.pb2) as they are.
"""

from __future__ import annotations

import contextlib
import datetime
import random
import threading
import time
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union, overload

import grpc

from . import _convert
from ._batch import Batch, SubmitResult
from ._convert import RequestLike, is_terminal
from ._pb import pb2, pb2_grpc
from .errors import DeadlineExceeded, ReboundError, Unavailable, from_rpc_error
from .retry import RetryPolicy, retry_delay


def channel_options(retry: RetryPolicy) -> list[tuple[str, int]]:
    """Channel settings both clients use.

    After losing its server, a gRPC channel fails every call UNAVAILABLE at once until it has
    both re-resolved the target (at most once per `grpc.dns_min_time_between_resolutions_ms`)
    and reconnected (after its reconnect backoff: 1 s, growing to 120 s). Measured with gRPC
    1.51: with the defaults, a server that is back is found only about 5 s later. Aligning both
    with the retry policy's backoff means a retried submit finds the channel reconnecting, not
    still waiting out a longer backoff of its own.
    """
    initial_ms = max(1, int(retry.initial_backoff * 1000))
    max_ms = max(initial_ms, int(retry.max_backoff * 1000))
    return [
        ("grpc.initial_reconnect_backoff_ms", initial_ms),
        ("grpc.max_reconnect_backoff_ms", max_ms),
        ("grpc.dns_min_time_between_resolutions_ms", initial_ms),
    ]


class Client:
    """A synchronous client of one Rebound server.

    Args:
        target: "host:port" or any gRPC target URI.
        tenant: sent as the `x-rebound-tenant` metadata of every call; the server's default
            tenant when None.
        token: sent as `authorization: Bearer <token>` on every call when given.
        timeout: deadline in seconds of every unary call (submit, get, list, ...).
        retry: how submits are retried (rebound_client.retry.RetryPolicy); NO_RETRY for none.
        credentials: channel credentials (grpc.ssl_channel_credentials(...)); plaintext when None.
        clock, sleep, rng: the monotonic clock, the sleep and the random source of the retry
            backoff; tests inject their own.
    """

    def __init__(
        self,
        target: str,
        tenant: Optional[str] = None,
        token: Optional[str] = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        credentials: Optional[grpc.ChannelCredentials] = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: Optional[random.Random] = None,
    ) -> None:
        if not target:
            raise ValueError("target: must not be empty")
        options = channel_options(retry)
        if credentials is None:
            channel = grpc.insecure_channel(target, options=options)
        else:
            channel = grpc.secure_channel(target, credentials, options=options)
        self._init(channel, tenant, token, timeout, retry, clock, sleep, rng)

    @classmethod
    def from_channel(
        cls,
        channel: grpc.Channel,
        tenant: Optional[str] = None,
        token: Optional[str] = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: Optional[random.Random] = None,
    ) -> "Client":
        """A client on an existing channel (e.g. one with interceptors); close() closes it."""
        client = cls.__new__(cls)
        client._init(channel, tenant, token, timeout, retry, clock, sleep, rng)
        return client

    def _init(
        self,
        channel: grpc.Channel,
        tenant: Optional[str],
        token: Optional[str],
        timeout: float,
        retry: RetryPolicy,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        rng: Optional[random.Random],
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout: must be positive")
        self._channel = channel
        self._stub = pb2_grpc.ReboundStub(channel)
        self._metadata = _convert.metadata(tenant, token)
        self._timeout = timeout
        self._retry = retry
        self._clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()

    def close(self) -> None:
        """Closes the channel; calls in progress are cancelled."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _unary(self, method: Callable, request: object):
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    # --- Submitting ---

    def submit(
        self, request: RequestLike, *, retry: Optional[RetryPolicy] = None
    ) -> pb2.SubmitSyncResponse:
        """Submits one job (SubmitSync); returns once it is durable.

        `request` is a rebound.v1.SyncRequest or a mapping of its fields (see
        rebound_client.to_sync_request). The answer carries the job id, its state and whether an
        existing job with the same key and request was returned (`deduplicated`).

        UNAVAILABLE and RESOURCE_EXHAUSTED are retried with backoff under `retry` (the client's
        policy when None), but only when the request has an idempotency key: that is what makes
        resending a job the server may already have accepted safe. Raises the typed error of the
        last attempt otherwise (InvalidArgument with `.field`, AlreadyExists, ...).
        """
        sync_request = _convert.to_sync_request(request)
        policy = retry or self._retry
        message = pb2.SubmitSyncRequest(request=sync_request)
        first_attempt_at = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._unary(self._stub.SubmitSync, message)
            except ReboundError as error:
                delay = retry_delay(
                    policy, error, sync_request, attempt, first_attempt_at, self._clock(), self._rng
                )
                if delay is None:
                    raise
            self._sleep(delay)

    def submit_many(
        self,
        requests: Iterable[RequestLike],
        *,
        window: int = 256,
        retry: Optional[RetryPolicy] = None,
        timeout: Optional[float] = None,
    ) -> Iterator[SubmitResult]:
        """Submits every job of `requests` over one SubmitSyncStream; yields one SubmitResult per
        job as the server makes it durable, in that order (not the input's: use `.index`).

        At most `window` jobs are sent and unanswered at a time; `requests` is read lazily, so it
        may be a large generator (e.g. lines of a file). A job's own error (InvalidArgument
        naming the field, AlreadyExists, ...) is its result's `.error`; it does not stop the
        others. Jobs answered UNAVAILABLE or RESOURCE_EXHAUSTED, and jobs left unanswered by a
        stream that broke with one of those codes, are resent on a new stream after a backoff,
        under `retry` (the client's policy when None) and only when they have an idempotency key
        (resending is safe because the key returns the job the server may already have).

        Jobs that share an ordering key reach the server in the iterable's order, retries
        included: a job is sent only once the one before it of its key has a result.

        Raises (after yielding the results it has) a stream-level error that retries cannot
        overcome, e.g. Unauthenticated, or Unavailable once the policy is used up; jobs without
        a result by then may or may not have been accepted. `timeout` is the deadline in
        seconds of each stream; none by default. Closing the generator early cancels the stream.
        """
        if window < 1:
            raise ValueError("window: must be at least 1")
        batch = Batch(retry or self._retry, self._rng)
        source = iter(requests)
        while True:
            batch.start_round()
            yield from self._stream_round(batch, source, window, timeout)
            end = batch.finish_round(self._clock())
            yield from end.results
            if end.error is not None:
                raise end.error
            if end.delay is None:
                return
            self._sleep(end.delay)

    def _stream_round(
        self, batch: Batch, source: Iterator[RequestLike], window: int, timeout: Optional[float]
    ) -> Iterator[SubmitResult]:
        """One SubmitSyncStream: sends jobs (waiting ones first) while at most `window` are
        unanswered, and yields the final results of the answers."""
        # Guards `batch`; notified when an answer may let a deferred job go, or the round ends.
        changed = threading.Condition()
        free = threading.Semaphore(window)
        # Held by gRPC's request thread while it runs the generator below (all but its yield),
        # so the round ends only once no job is half taken from `source` or waiting for room.
        busy = threading.Lock()
        closed = threading.Event()

        def messages() -> Iterator[pb2.SubmitSyncStreamRequest]:
            while True:
                with busy:
                    with changed:
                        while True:
                            if closed.is_set():
                                return
                            job = batch.next_ready()
                            if job is not None or not batch.source_done:
                                break
                            if not batch.expecting_release():
                                return  # half-closes the stream
                            changed.wait()
                    # The next job is taken before waiting for room, so that a used-up source
                    # half-closes the stream at once instead of after the next answer.
                    if job is None:
                        try:
                            value = next(source)
                        except StopIteration:
                            with changed:
                                batch.source_done = True
                            continue
                        except BaseException as error:  # re-raised by finish_round, in the caller
                            batch.source_error = error
                            return
                        with changed:
                            try:
                                job = batch.new_job(value)
                            except (TypeError, ValueError) as error:
                                batch.source_error = error
                                return
                        if job is None:
                            continue  # deferred behind an earlier job of its ordering key
                    free.acquire()
                    with changed:
                        if closed.is_set():
                            batch.unsent(job)
                            return
                        message = batch.sent(job, self._clock())
                yield message

        call = self._stub.SubmitSyncStream(messages(), metadata=self._metadata, timeout=timeout)
        try:
            for response in call:
                with changed:
                    result = batch.answered(response)
                    changed.notify()
                free.release()
                if result is not None:
                    yield result
        except grpc.RpcError as error:
            with changed:
                batch.stream_failed(from_rpc_error(error))
        finally:
            call.cancel()
            closed.set()
            with changed:
                changed.notify()
            free.release()  # wakes the generator should it wait for room, so it sees `closed`
            with busy:
                pass

    # --- Reading ---

    def get(self, job_id: str) -> pb2.SyncJob:
        """One job with its attempt history (GetSync). NotFound for an unknown id."""
        return self._unary(self._stub.GetSync, pb2.GetSyncRequest(job_id=job_id))

    def watch(self, job_id: str, timeout: Optional[float] = None) -> Iterator[pb2.SyncEvent]:
        """The job's current state, then every change until it is terminal (WatchSync).

        The iterator ends after the terminal event; closing it early cancels the stream.
        `timeout` (seconds) is the stream's deadline (DeadlineExceeded); none by default.
        """
        call = self._stub.WatchSync(
            pb2.WatchSyncRequest(job_id=job_id), metadata=self._metadata, timeout=timeout
        )
        try:
            yield from call
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error
        finally:
            call.cancel()

    def await_terminal(self, job_id: str, timeout: float) -> pb2.SyncJob:
        """Waits up to `timeout` seconds for the job to be terminal and returns it, with its
        attempt history (as get()). DeadlineExceeded when it is not terminal in time;
        Unavailable when the server ended the watch first and the job is still not terminal.
        """
        state = pb2.SYNC_STATE_UNSPECIFIED
        try:
            with contextlib.closing(self.watch(job_id, timeout=timeout)) as events:
                for event in events:
                    state = event.state
                    if is_terminal(state):
                        break
        except DeadlineExceeded:
            raise DeadlineExceeded(
                f"{job_id} not terminal after {timeout}s (state {pb2.SyncState.Name(state)})"
            ) from None
        # The events carry no attempt history; the job does. Without a terminal event the server
        # closed the stream early (e.g. shutting down), and the job may still have ended.
        job = self.get(job_id)
        if is_terminal(state) or is_terminal(job.state):
            return job
        raise Unavailable(
            f"watch of {job_id} ended before the job was terminal "
            f"(state {pb2.SyncState.Name(job.state)})"
        )

    def list(
        self,
        *,
        states: Optional[Sequence[int]] = None,
        endpoint: str = "",
        ordering_key: str = "",
        label: str = "",
        wait_reason: int = pb2.WAIT_REASON_UNSPECIFIED,
        page_size: int = 0,
        page_token: str = "",
    ) -> pb2.ListSyncsResponse:
        """One page of jobs, newest first (ListSyncs), filtered by any of: states, endpoint,
        ordering key, label ("key=value"), wait reason. Follow `next_page_token`, or use
        list_all()."""
        request = _convert.list_request(
            list(states or []), endpoint, ordering_key, label, wait_reason, page_size, page_token
        )
        return self._unary(self._stub.ListSyncs, request)

    def list_all(
        self,
        *,
        states: Optional[Sequence[int]] = None,
        endpoint: str = "",
        ordering_key: str = "",
        label: str = "",
        wait_reason: int = pb2.WAIT_REASON_UNSPECIFIED,
        page_size: int = 0,
    ) -> Iterator[pb2.SyncJob]:
        """Every job list() would return, page after page."""
        page_token = ""
        while True:
            page = self.list(
                states=states,
                endpoint=endpoint,
                ordering_key=ordering_key,
                label=label,
                wait_reason=wait_reason,
                page_size=page_size,
                page_token=page_token,
            )
            yield from page.jobs
            page_token = page.next_page_token
            if not page_token:
                return

    # --- Acting on jobs ---

    def cancel(self, job_id: str) -> pb2.SyncJob:
        """Cancels a job that is not terminal (CancelSync); FailedPrecondition when it is."""
        return self._unary(self._stub.CancelSync, pb2.CancelSyncRequest(job_id=job_id))

    def replay(self, job_id: str) -> pb2.SyncJob:
        """Puts a FAILED or EXHAUSTED job back to QUEUED with a fresh attempt budget
        (ReplaySync); FailedPrecondition for a job that is not dead-lettered."""
        return self._unary(self._stub.ReplaySync, pb2.ReplaySyncRequest(job_id=job_id))

    # --- Endpoints ---

    @overload
    def endpoint_status(self, name: None = None) -> list[pb2.EndpointStatus]: ...

    @overload
    def endpoint_status(self, name: str) -> pb2.EndpointStatus: ...

    def endpoint_status(
        self, name: Optional[str] = None
    ) -> Union[pb2.EndpointStatus, list[pb2.EndpointStatus]]:
        """The protection state of the endpoint `name` (GetEndpointStatus), or of every endpoint
        in config order when `name` is None. NotFound for an endpoint that is not configured."""
        response = self._unary(
            self._stub.GetEndpointStatus, pb2.GetEndpointStatusRequest(name=name or "")
        )
        return list(response.endpoints) if name is None else response.endpoints[0]

    def pause_endpoint(
        self,
        name: str,
        *,
        reason: str,
        until: Optional[datetime.datetime] = None,
        duration: Optional[Union[float, datetime.timedelta]] = None,
    ) -> pb2.EndpointStatus:
        """Operator pause of an endpoint (PauseEndpoint): its jobs wait with OPERATOR_PAUSED and
        spend no attempt, until `until` (an aware datetime), for `duration` (seconds or a
        timedelta), or, with neither, until resumed. Returns the endpoint's new status."""
        return self._unary(
            self._stub.PauseEndpoint, _convert.pause_request(name, reason, until, duration)
        )

    def resume_endpoint(self, name: str) -> pb2.EndpointStatus:
        """Lifts an operator pause (ResumeEndpoint); FailedPrecondition when there is none."""
        return self._unary(self._stub.ResumeEndpoint, pb2.ResumeEndpointRequest(name=name))
