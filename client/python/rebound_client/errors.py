"""Typed errors of the Rebound API: one exception class per gRPC status code the API uses.

Every call of `Client` and `AsyncClient` raises a `ReboundError` subclass instead of a raw
`grpc.RpcError`, so callers act on the code (README "Errors"): fix the input on
`InvalidArgument` (whose `.field` names the offending field), back off on `ResourceExhausted`,
retry later on `Unavailable`, and so on. Codes without a class of their own (e.g. DATA_LOSS,
INTERNAL, UNIMPLEMENTED) raise the base class with `.code` set.
"""

from __future__ import annotations

import re
from typing import Optional

import grpc

# The server's INVALID_ARGUMENT messages start with the field's path and a colon
# (server/api/validation.cc: "request.path: ...", "requests[3].headers[0].name: ...",
# "request.labels[grade]: ...", "job_id: is required"). Anything else (e.g. "metadata
# x-rebound-tenant: ...", which has a space before its colon) names no field.
_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:\[[^\]]*\])*"  # a field name and its subscripts, if any
_FIELD_PATH = re.compile(rf"{_NAME}(?:\.{_NAME})*")


def parse_field(message: str) -> Optional[str]:
    """The field path an INVALID_ARGUMENT message starts with, or None when it names none."""
    head, colon, _ = message.partition(": ")
    if not colon:
        return None
    return head if _FIELD_PATH.fullmatch(head) else None


class ReboundError(Exception):
    """An error answered by the Rebound API (or by gRPC on its way there).

    Attributes:
        code: the gRPC status code.
        message: the server's message, as sent.
        field: for INVALID_ARGUMENT, the path of the field the message names (e.g.
            "request.endpoint"); None for other codes or when the message names no field.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.field = parse_field(message) if self.code == grpc.StatusCode.INVALID_ARGUMENT else None

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgument(ReboundError):
    """Bad input; `.field` says which field. Fix the request; retrying it cannot help."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ReboundError):
    """No such job (in this tenant) or endpoint."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ReboundError):
    """The idempotency key is used by another job with a different request."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ReboundError):
    """The job or endpoint is not in a state that allows this (e.g. cancel a finished job)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ReboundError):
    """A server limit was reached (too many active jobs or watchers): back off and retry."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ReboundError):
    """The server cannot be reached, is shutting down, or cannot write: retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(ReboundError):
    """The call carries no valid credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ReboundError):
    """The caller's role does not allow this call."""

    code = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceeded(ReboundError):
    """The call's deadline passed (or `await_terminal`'s timeout, with the job not terminal)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        Unauthenticated,
        PermissionDenied,
        DeadlineExceeded,
    )
}
# grpc.StatusCode's values are (number, name) pairs; the stream's per-job results carry the
# number (google.rpc.Code).
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def error_for(code: grpc.StatusCode, message: str) -> ReboundError:
    """The typed error of a status code and message (the base class for codes without one)."""
    cls = _BY_CODE.get(code)
    return cls(message) if cls is not None else ReboundError(message, code)


def error_for_number(number: int, message: str) -> ReboundError:
    """As `error_for`, from a numeric google.rpc.Code (an unknown number maps to UNKNOWN)."""
    return error_for(_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN), message)


def from_rpc_error(error: grpc.RpcError) -> ReboundError:
    """The typed error of a failed gRPC call (sync or asyncio)."""
    # Every RpcError raised by a call is also a grpc.Call (sync) or an AioRpcError (asyncio),
    # both of which have code() and details().
    return error_for(error.code(), error.details() or "")
