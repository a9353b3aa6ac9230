"""Typed errors: one class per code, and the field an INVALID_ARGUMENT message names."""

from __future__ import annotations

import grpc
import pytest

import rebound_client
from rebound_client.errors import error_for, error_for_number, parse_field


@pytest.mark.parametrize(
    "message, field",
    [
        ("request.endpoint: unknown endpoint 'nope'", "request.endpoint"),
        ("request.path: '/admin' is outside the allowed prefixes (/api/v1/)", "request.path"),
        ("requests[3].headers[0].name: may not be sent", "requests[3].headers[0].name"),
        ("request.labels[grade level]: key must be 1-63 of ...", "request.labels[grade level]"),
        ("job_id: is required", "job_id"),
        ("request: does not parse as rebound.v1.SubmitSyncRequest: ...", "request"),
        # A colon after words is not a field path.
        ("metadata x-rebound-tenant: 1-64 characters of [A-Za-z0-9_.-]", None),
        ("too many active jobs (limit 2); retry later", None),
        ("", None),
    ],
)
def test_the_field_is_the_path_before_the_first_colon(message: str, field: str) -> None:
    assert parse_field(message) == field


@pytest.mark.parametrize(
    "code, cls",
    [
        (grpc.StatusCode.INVALID_ARGUMENT, rebound_client.InvalidArgument),
        (grpc.StatusCode.NOT_FOUND, rebound_client.NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, rebound_client.AlreadyExists),
        (grpc.StatusCode.FAILED_PRECONDITION, rebound_client.FailedPrecondition),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, rebound_client.ResourceExhausted),
        (grpc.StatusCode.UNAVAILABLE, rebound_client.Unavailable),
        (grpc.StatusCode.UNAUTHENTICATED, rebound_client.Unauthenticated),
        (grpc.StatusCode.PERMISSION_DENIED, rebound_client.PermissionDenied),
        (grpc.StatusCode.DEADLINE_EXCEEDED, rebound_client.DeadlineExceeded),
    ],
)
def test_each_code_of_the_api_has_its_class(code: grpc.StatusCode, cls: type) -> None:
    error = error_for(code, "request.endpoint: is required")
    assert type(error) is cls and isinstance(error, rebound_client.ReboundError)
    assert error.code == code and error.message == "request.endpoint: is required"
    # Only INVALID_ARGUMENT messages are read for a field.
    assert error.field == ("request.endpoint" if cls is rebound_client.InvalidArgument else None)
    # The stream's per-job results carry the code's number.
    assert type(error_for_number(code.value[0], "x")) is cls


def test_other_codes_keep_theirs_on_the_base_class() -> None:
    error = error_for_number(15, "database file is damaged")
    assert type(error) is rebound_client.ReboundError
    assert error.code == grpc.StatusCode.DATA_LOSS
    assert str(error) == "DATA_LOSS: database file is damaged"
