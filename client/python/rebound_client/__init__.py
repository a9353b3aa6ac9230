"""Python client of Rebound, the gRPC retry-orchestration service (proto/rebound/v1).

    from rebound_client import Client, InvalidArgument, pb2

- `Client` (sync) and `rebound_client.aio.AsyncClient` (asyncio): submit, submit_many over
  SubmitSyncStream, get, watch, await_terminal, list, cancel, replay, endpoint status, pause
  and resume.
- Typed errors per gRPC code (`ReboundError` and its subclasses; `.field` on InvalidArgument).
- `RetryPolicy`: how submits of jobs with an idempotency key are retried on UNAVAILABLE and
  RESOURCE_EXHAUSTED.
- `pb2`: the generated messages and enums (pb2.SUCCEEDED, pb2.SyncRequest, ...).
"""

from ._batch import SubmitResult
from ._convert import TERMINAL_STATES, RequestLike, is_terminal, to_sync_request
from ._pb import pb2
from .client import Client
from .errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ReboundError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from .retry import NO_RETRY, RetryPolicy

__all__ = [
    "AlreadyExists",
    "Client",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NO_RETRY",
    "NotFound",
    "PermissionDenied",
    "ReboundError",
    "RequestLike",
    "ResourceExhausted",
    "RetryPolicy",
    "SubmitResult",
    "TERMINAL_STATES",
    "Unauthenticated",
    "Unavailable",
    "is_terminal",
    "pb2",
    "to_sync_request",
]
