"""The asyncio Python client of the Rebound API (grpc.aio); the same calls as rebound_client.Client.

    from rebound_client.aio import AsyncClient

    async with AsyncClient("127.0.0.1:50051", tenant="district-7") as rebound:
        async for result in rebound.submit_many(jobs):
            ...
        async for event in rebound.watch(job_id):
            ...

Create an AsyncClient inside the event loop that uses it (grpc.aio binds its channel to that
loop). Every method raises a typed `ReboundError` (rebound_client.errors) and returns the API's
messages (rebound_client.pb2).
"""

from __future__ import annotations

import asyncio
import datetime
import random
import time
from typing import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Optional,
    Sequence,
    Union,
    overload,
)

import grpc
import grpc.aio

from . import _convert
from ._batch import Batch, SubmitResult
from ._convert import RequestLike, is_terminal
from ._pb import pb2, pb2_grpc
from .client import channel_options
from .errors import DeadlineExceeded, ReboundError, Unavailable, from_rpc_error
from .retry import RetryPolicy, retry_delay


async def _jobs_of(
    requests: Union[Iterable[RequestLike], AsyncIterable[RequestLike]]
) -> AsyncIterator[RequestLike]:
    if isinstance(requests, AsyncIterable):
        async for request in requests:
            yield request
    else:
        for request in requests:
            yield request


class AsyncClient:
    """An asyncio client of one Rebound server. Arguments as rebound_client.Client's; `sleep`
    is a coroutine function (asyncio.sleep by default)."""

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
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Optional[random.Random] = None,
    ) -> None:
        if not target:
            raise ValueError("target: must not be empty")
        if timeout <= 0:
            raise ValueError("timeout: must be positive")
        options = channel_options(retry)
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        else:
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        self._stub = pb2_grpc.ReboundStub(self._channel)
        self._metadata = _convert.metadata(tenant, token)
        self._timeout = timeout
        self._retry = retry
        self._clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()

    async def close(self) -> None:
        """Closes the channel; calls in progress are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _unary(self, method: Callable, request: object):
        try:
            return await method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    # --- Submitting ---

    async def submit(
        self, request: RequestLike, *, retry: Optional[RetryPolicy] = None
    ) -> pb2.SubmitSyncResponse:
        """Submits one job (SubmitSync); as Client.submit, retries included (UNAVAILABLE and
        RESOURCE_EXHAUSTED, only for a request with an idempotency key)."""
        sync_request = _convert.to_sync_request(request)
        policy = retry or self._retry
        message = pb2.SubmitSyncRequest(request=sync_request)
        first_attempt_at = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._unary(self._stub.SubmitSync, message)
            except ReboundError as error:
                delay = retry_delay(
                    policy, error, sync_request, attempt, first_attempt_at, self._clock(), self._rng
                )
                if delay is None:
                    raise
            await self._sleep(delay)

    async def submit_many(
        self,
        requests: Union[Iterable[RequestLike], AsyncIterable[RequestLike]],
        *,
        window: int = 256,
        retry: Optional[RetryPolicy] = None,
        timeout: Optional[float] = None,
    ) -> AsyncIterator[SubmitResult]:
        """Submits every job of `requests` (an iterable or async iterable) over
        SubmitSyncStream; yields one SubmitResult per job as it becomes durable. As
        Client.submit_many: at most `window` unanswered, per-job errors in the results, retries
        of UNAVAILABLE / RESOURCE_EXHAUSTED for jobs with an idempotency key, jobs of one ordering
        key sent in order, one at a time, and a stream-level error that retries cannot overcome
        raised after the results."""
        if window < 1:
            raise ValueError("window: must be at least 1")
        batch = Batch(retry or self._retry, self._rng)
        source = _jobs_of(requests)
        try:
            while True:
                batch.start_round()
                async for result in self._stream_round(batch, source, window, timeout):
                    yield result
                end = batch.finish_round(self._clock())
                for result in end.results:
                    yield result
                if end.error is not None:
                    raise end.error
                if end.delay is None:
                    return
                await self._sleep(end.delay)
        finally:
            await source.aclose()

    async def _stream_round(
        self,
        batch: Batch,
        source: AsyncIterator[RequestLike],
        window: int,
        timeout: Optional[float],
    ) -> AsyncIterator[SubmitResult]:
        """One SubmitSyncStream: a writer task sends jobs (waiting ones first) while at most
        `window` are unanswered; this reads the answers and yields their final results."""
        call = self._stub.SubmitSyncStream(metadata=self._metadata, timeout=timeout)
        free = asyncio.Semaphore(window)
        # Set when an answer may let a deferred job go, or the round ends.
        changed = asyncio.Event()
        closed = False

        async def write() -> None:
            while not closed:
                job = batch.next_ready()
                if job is None and batch.source_done:
                    if not batch.expecting_release():
                        break
                    changed.clear()
                    await changed.wait()
                    continue
                # The next job is taken before waiting for room, so that a used-up source
                # half-closes the stream at once instead of after the next answer.
                if job is None:
                    try:
                        value = await source.__anext__()
                    except StopAsyncIteration:
                        batch.source_done = True
                        continue
                    except Exception as error:  # re-raised by finish_round, in the caller
                        batch.source_error = error
                        break
                    try:
                        job = batch.new_job(value)
                    except (TypeError, ValueError) as error:
                        batch.source_error = error
                        break
                    if job is None:
                        continue  # deferred behind an earlier job of its ordering key
                await free.acquire()
                if closed:
                    batch.unsent(job)
                    return
                try:
                    await call.write(batch.sent(job, self._clock()))
                except (grpc.RpcError, asyncio.InvalidStateError):
                    # The call has ended; the reader sees why. The job stays outstanding, so the
                    # round's end counts it as unanswered.
                    return
            if closed:
                return
            try:
                await call.done_writing()
            except (grpc.RpcError, asyncio.InvalidStateError):
                return

        writer = asyncio.ensure_future(write())
        try:
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    break
                result = batch.answered(response)
                changed.set()
                free.release()
                if result is not None:
                    yield result
        except grpc.RpcError as error:
            batch.stream_failed(from_rpc_error(error))
        finally:
            call.cancel()
            closed = True
            changed.set()
            free.release()  # wakes the writer should it wait for room, so it sees `closed`
            await writer

    # --- Reading ---

    async def get(self, job_id: str) -> pb2.SyncJob:
        """One job with its attempt history (GetSync). NotFound for an unknown id."""
        return await self._unary(self._stub.GetSync, pb2.GetSyncRequest(job_id=job_id))

    async def watch(
        self, job_id: str, timeout: Optional[float] = None
    ) -> AsyncIterator[pb2.SyncEvent]:
        """The job's current state, then every change until it is terminal (WatchSync), for
        `async for`. `timeout` (seconds) is the stream's deadline; none by default."""
        call = self._stub.WatchSync(
            pb2.WatchSyncRequest(job_id=job_id), metadata=self._metadata, timeout=timeout
        )
        try:
            async for event in call:
                yield event
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error
        finally:
            call.cancel()

    async def await_terminal(self, job_id: str, timeout: float) -> pb2.SyncJob:
        """As Client.await_terminal: the job once terminal, DeadlineExceeded after `timeout`."""
        state = pb2.SYNC_STATE_UNSPECIFIED
        events = self.watch(job_id, timeout=timeout)
        try:
            async for event in events:
                state = event.state
                if is_terminal(state):
                    break
        except DeadlineExceeded:
            raise DeadlineExceeded(
                f"{job_id} not terminal after {timeout}s (state {pb2.SyncState.Name(state)})"
            ) from None
        finally:
            await events.aclose()
        job = await self.get(job_id)
        if is_terminal(state) or is_terminal(job.state):
            return job
        raise Unavailable(
            f"watch of {job_id} ended before the job was terminal "
            f"(state {pb2.SyncState.Name(job.state)})"
        )

    async def list(
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
        """One page of jobs, newest first (ListSyncs); as Client.list."""
        request = _convert.list_request(
            list(states or []), endpoint, ordering_key, label, wait_reason, page_size, page_token
        )
        return await self._unary(self._stub.ListSyncs, request)

    # --- Acting on jobs ---

    async def cancel(self, job_id: str) -> pb2.SyncJob:
        """Cancels a job that is not terminal; FailedPrecondition when it is."""
        return await self._unary(self._stub.CancelSync, pb2.CancelSyncRequest(job_id=job_id))

    async def replay(self, job_id: str) -> pb2.SyncJob:
        """Re-queues a FAILED or EXHAUSTED job; FailedPrecondition otherwise."""
        return await self._unary(self._stub.ReplaySync, pb2.ReplaySyncRequest(job_id=job_id))

    # --- Endpoints ---

    @overload
    async def endpoint_status(self, name: None = None) -> list[pb2.EndpointStatus]: ...

    @overload
    async def endpoint_status(self, name: str) -> pb2.EndpointStatus: ...

    async def endpoint_status(
        self, name: Optional[str] = None
    ) -> Union[pb2.EndpointStatus, list[pb2.EndpointStatus]]:
        """One endpoint's protection state, or every endpoint's in config order (name None)."""
        response = await self._unary(
            self._stub.GetEndpointStatus, pb2.GetEndpointStatusRequest(name=name or "")
        )
        return list(response.endpoints) if name is None else response.endpoints[0]

    async def pause_endpoint(
        self,
        name: str,
        *,
        reason: str,
        until: Optional[datetime.datetime] = None,
        duration: Optional[Union[float, datetime.timedelta]] = None,
    ) -> pb2.EndpointStatus:
        """Operator pause of an endpoint; as Client.pause_endpoint."""
        return await self._unary(
            self._stub.PauseEndpoint, _convert.pause_request(name, reason, until, duration)
        )

    async def resume_endpoint(self, name: str) -> pb2.EndpointStatus:
        """Lifts an operator pause; FailedPrecondition when there is none."""
        return await self._unary(self._stub.ResumeEndpoint, pb2.ResumeEndpointRequest(name=name))
