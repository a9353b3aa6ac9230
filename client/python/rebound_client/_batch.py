"""The bookkeeping of one submit_many(), shared by the sync and asyncio clients. No I/O.

submit_many() sends jobs over SubmitSyncStream in *rounds*, one stream each. The first round
takes the caller's jobs; a job answered UNAVAILABLE or RESOURCE_EXHAUSTED (with an idempotency
key, within the retry policy) waits for the next round, which starts after a backoff and sends the
waiting jobs first, then whatever the caller's iterable still holds. A stream that breaks with a
retryable status (e.g. the server restarts) counts as a failed attempt of every job it left
unanswered: they may or may not have been accepted, and resending them is safe because the
idempotency key returns the existing job. Every other outcome is final at once and handed to the
caller as a `SubmitResult`.

Jobs that share an ordering key must reach the server in the caller's order, since the server
runs them in the order it receives them, retries or not. So one such job at a time is on the
wire: a later job of a key that is outstanding or waiting for a round is *deferred* until that
job is final (accepted, or given up), and then sent.

Each job's sequence number on the stream is its index in the caller's iterable, so it is unique
within the batch and its result names the job it belongs to.

Not thread-safe: the sync client guards it with a lock; the asyncio one uses it from one loop.
"""

from __future__ import annotations

import collections
import dataclasses
import random
from typing import Optional

import grpc

from ._convert import RequestLike, to_sync_request
from ._pb import pb2
from .errors import ReboundError, error_for_number
from .retry import RETRYABLE_CODES, RetryPolicy, is_retryable


@dataclasses.dataclass(frozen=True)
class SubmitResult:
    """The outcome of one job of submit_many().

    Attributes:
        index: the job's position in the iterable given to submit_many().
        request: the job as sent.
        response: the server's answer (job id, state, deduplicated) when accepted; for
            ALREADY_EXISTS, the existing job of that key. None otherwise.
        error: the job's typed error (e.g. InvalidArgument with `.field`), after any retries;
            None when accepted.
        attempts: how many times it was sent.
    """

    index: int
    request: pb2.SyncRequest
    response: Optional[pb2.SubmitSyncResponse]
    error: Optional[ReboundError]
    attempts: int

    @property
    def ok(self) -> bool:
        """True when the job was accepted (or deduplicated)."""
        return self.error is None

    @property
    def job_id(self) -> str:
        """The job's id ("" when there is none)."""
        return self.response.job_id if self.response is not None else ""

    @property
    def deduplicated(self) -> bool:
        """True when the key and request matched an existing job, which was returned."""
        return self.response is not None and self.response.deduplicated


@dataclasses.dataclass
class _Job:
    index: int
    request: pb2.SyncRequest
    attempts: int = 0
    first_sent_at: float = 0.0
    # The last retryable error, given as its result if it runs out of retries.
    error: Optional[ReboundError] = None

    def result(self, response: Optional[pb2.SubmitSyncResponse] = None) -> SubmitResult:
        return SubmitResult(self.index, self.request, response, self.error, self.attempts)


@dataclasses.dataclass(frozen=True)
class RoundEnd:
    """What to do after a round's stream ended.

    Attributes:
        results: jobs that are final now (out of retries), to hand to the caller.
        delay: seconds to wait before the next round; None when the batch is done.
        error: to raise after the results (the stream failed for good, or the caller's iterable
            raised); None otherwise.
    """

    results: list[SubmitResult]
    delay: Optional[float]
    error: Optional[BaseException]


class Batch:
    """State of one submit_many(): jobs outstanding on the current stream, jobs waiting for a
    round, jobs deferred behind an earlier one of their ordering key, and the policy that
    decides between retry and result."""

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng
        self._next_index = 0
        self._outstanding: dict[int, _Job] = {}
        # To send in this round before any new job, and to send in the next one.
        self._retry_now: collections.deque[_Job] = collections.deque()
        self._retry_next: list[_Job] = []
        # Per ordering key with a job that is not final: that job's index, and the later jobs of
        # the key, in order.
        self._key_owner: dict[str, int] = {}
        self._deferred: dict[str, collections.deque[_Job]] = {}
        self._stream_error: Optional[ReboundError] = None
        self._stream_failures = 0
        self._first_stream_failure_at = 0.0
        # Set by the driver when the caller's iterable is used up, or raised.
        self.source_done = False
        self.source_error: Optional[BaseException] = None

    def start_round(self) -> None:
        """Called before a round's stream opens: the jobs that were sent before go first."""
        self._retry_now.extendleft(reversed(self._retry_next))
        self._retry_next.clear()
        self._stream_error = None

    def next_ready(self) -> Optional[_Job]:
        """The next job of this round that waits to be sent and may be (sent before new ones)."""
        while self._retry_now:
            job = self._retry_now.popleft()
            if self._admit(job):
                return job
        return None

    def new_job(self, value: RequestLike) -> Optional[_Job]:
        """A job of the caller's iterable, or None when it is deferred behind an earlier job of
        its ordering key. TypeError or ValueError for a value that is not a job."""
        job = _Job(self._next_index, to_sync_request(value))
        self._next_index += 1
        return job if self._admit(job) else None

    def expecting_release(self) -> bool:
        """True when an outstanding job's answer may let a deferred job go in this round."""
        return any(self._key_owner[key] in self._outstanding for key in self._deferred)

    def unsent(self, job: _Job) -> None:
        """A job taken for sending when the stream had already ended: first of the next round."""
        self._retry_now.appendleft(job)

    def sent(self, job: _Job, now: float) -> pb2.SubmitSyncStreamRequest:
        """Records that `job` is being sent and returns its message."""
        if job.attempts == 0:
            job.first_sent_at = now
        job.attempts += 1
        self._outstanding[job.index] = job
        return pb2.SubmitSyncStreamRequest(sequence=job.index, request=job.request)

    def answered(self, response: pb2.SubmitSyncStreamResponse) -> Optional[SubmitResult]:
        """The result of a job's answer, or None when the job waits for the next round.

        Raises ReboundError (INTERNAL) for a sequence that is not outstanding: the server broke
        the protocol, and the batch cannot tell which job the answer belongs to.
        """
        job = self._outstanding.pop(response.sequence, None)
        if job is None:
            raise ReboundError(
                f"SubmitSyncStream answered sequence {response.sequence}, which is not outstanding",
                grpc.StatusCode.INTERNAL,
            )
        if response.code == 0:
            job.error = None
            return self._final(job, response.result)
        job.error = error_for_number(response.code, response.message)
        if is_retryable(job.error, job.request) and job.attempts < self._policy.max_attempts:
            self._retry_next.append(job)
            return None
        return self._final(job, response.result if response.HasField("result") else None)

    def stream_failed(self, error: ReboundError) -> None:
        """The round's stream ended with `error` (before every job was answered)."""
        self._stream_error = error

    def finish_round(self, now: float) -> RoundEnd:
        """Decides, after a round's stream ended, which jobs are final and whether (and when) the
        next round starts."""
        results: list[SubmitResult] = []
        error = self._stream_error
        if error is None and self._outstanding:
            error = ReboundError(
                f"SubmitSyncStream ended OK with {len(self._outstanding)} jobs unanswered",
                grpc.StatusCode.INTERNAL,
            )
        if error is not None and error.code in RETRYABLE_CODES:
            if self._stream_failures == 0:
                self._first_stream_failure_at = now
            self._stream_failures += 1
            unanswered = list(self._outstanding.values())
            self._outstanding.clear()
            for job in unanswered:
                job.error = error
                if is_retryable(error, job.request) and job.attempts < self._policy.max_attempts:
                    self._retry_next.append(job)
                else:
                    results.append(self._final(job))
        elif error is not None:
            # Not retryable (e.g. UNAUTHENTICATED, UNIMPLEMENTED): the whole batch stops; the
            # jobs still outstanding may or may not have been accepted.
            return RoundEnd(results + self._give_up_all(error), None, error)
        else:
            self._stream_failures = 0

        if self.source_error is not None:
            return RoundEnd(
                results + self._give_up_all(_not_sent("the iterable of jobs raised")),
                None,
                self.source_error,
            )
        if self._done():
            return RoundEnd(results, None, None)

        failures = max([self._stream_failures] + [j.attempts for j in self._retry_next])
        delay = self._policy.backoff(max(failures, 1), self._rng)
        if self._stream_failures > 0 and (
            self._stream_failures >= self._policy.max_attempts
            or now + delay - self._first_stream_failure_at > self._policy.max_elapsed
        ):
            return RoundEnd(results + self._give_up_all(error), None, error)
        waiting, self._retry_next = self._retry_next, []
        for job in waiting:
            if now + delay - job.first_sent_at > self._policy.max_elapsed:
                results.append(self._final(job))
            else:
                self._retry_next.append(job)
        if self._done():
            return RoundEnd(results, None, None)
        return RoundEnd(results, delay, None)

    def _done(self) -> bool:
        return self.source_done and not (self._retry_next or self._retry_now or self._deferred)

    def _admit(self, job: _Job) -> bool:
        """True when `job` may be sent now; else it is deferred behind its key's current job."""
        key = job.request.ordering_key
        if not key or self._key_owner.setdefault(key, job.index) == job.index:
            return True
        self._deferred.setdefault(key, collections.deque()).append(job)
        return False

    def _final(self, job: _Job, response: Optional[pb2.SubmitSyncResponse] = None) -> SubmitResult:
        """`job`'s result; the next job of its ordering key, if one was deferred, may go now."""
        key = job.request.ordering_key
        if key:
            later = self._deferred.get(key)
            if later:
                successor = later.popleft()
                if not later:
                    del self._deferred[key]
                self._key_owner[key] = successor.index
                self._retry_now.append(successor)
            else:
                del self._key_owner[key]
        return job.result(response)

    def _give_up_all(self, fallback: ReboundError) -> list[SubmitResult]:
        """Results of every job that is not final (outstanding, waiting for a round, deferred),
        each with its last error (`fallback` for a job that was not answered); clears them."""
        for job in self._outstanding.values():
            job.error = fallback
        jobs = list(self._outstanding.values()) + list(self._retry_now) + self._retry_next
        for later in self._deferred.values():
            jobs.extend(later)
        for job in jobs:
            job.error = job.error or fallback
        self._outstanding.clear()
        self._retry_now.clear()
        self._retry_next.clear()
        self._deferred.clear()
        self._key_owner.clear()
        return [job.result() for job in jobs]


def _not_sent(why: str) -> ReboundError:
    return ReboundError(f"not sent: {why}", grpc.StatusCode.CANCELLED)
