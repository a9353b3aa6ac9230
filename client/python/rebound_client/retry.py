"""Client-side retries of submits: which errors, how often, how long to wait.

A submit that fails UNAVAILABLE (the server is down, restarting or cannot write) or
RESOURCE_EXHAUSTED (too many active jobs) is tried again after a capped exponential backoff with
jitter, a bounded number of times and within a bounded total time. Only submits are retried,
and only those whose request carries an idempotency key: resubmitting a job that the server may
already have accepted is safe exactly because the same key and request return the existing job
(deduplicated) instead of making a second one.

Pure functions of their arguments; the clients inject the clock, the sleep and the random source,
so tests run schedules without sleeping.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Optional

import grpc

from ._pb import pb2
from .errors import ReboundError

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How submits are retried. Times are in seconds.

    Attributes:
        max_attempts: attempts per job, the first included (1: no retries).
        initial_backoff: the cap of the delay after the first failed attempt.
        max_backoff: the largest cap; the n-th cap is min(max_backoff,
            initial_backoff * multiplier ** (n - 1)).
        multiplier: growth of the cap per failed attempt.
        max_elapsed: no retry starts later than this after the job's first attempt.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    max_elapsed: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts: must be at least 1")
        if not 0 < self.initial_backoff <= self.max_backoff:
            raise ValueError("initial_backoff: must be positive and at most max_backoff")
        if self.multiplier < 1:
            raise ValueError("multiplier: must be at least 1")
        if self.max_elapsed < 0:
            raise ValueError("max_elapsed: must not be negative")

    def backoff(self, failed_attempts: int, rng: random.Random) -> float:
        """The delay after `failed_attempts` (>= 1) failed attempts: "equal jitter", uniform in
        [cap / 2, cap], so retries spread out in time (the fixed half) and many clients that failed
        together do not come back together (the random half)."""
        cap = min(self.max_backoff, self.initial_backoff * self.multiplier ** (failed_attempts - 1))
        return rng.uniform(cap / 2, cap)


# For callers that want every error at once: one attempt, no retry.
NO_RETRY = RetryPolicy(max_attempts=1)


def is_retryable(error: ReboundError, request: pb2.SyncRequest) -> bool:
    """UNAVAILABLE or RESOURCE_EXHAUSTED, for a request with an idempotency key."""
    return error.code in RETRYABLE_CODES and bool(request.idempotency_key)


def retry_delay(
    policy: RetryPolicy,
    error: ReboundError,
    request: pb2.SyncRequest,
    failed_attempts: int,
    first_attempt_at: float,
    now: float,
    rng: random.Random,
) -> Optional[float]:
    """How long to wait before trying `request` again after `error`, or None to give up: the
    error is not retryable, the attempts are used up, or the retry would start after
    `policy.max_elapsed` since the first attempt (times from the same monotonic clock)."""
    if not is_retryable(error, request) or failed_attempts >= policy.max_attempts:
        return None
    delay = policy.backoff(failed_attempts, rng)
    if now + delay - first_attempt_at > policy.max_elapsed:
        return None
    return delay
