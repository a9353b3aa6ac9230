"""Conversions from plain Python values to the API's messages, shared by both clients."""

from __future__ import annotations

import datetime
from typing import Any, Mapping, Optional, Union

from google.protobuf import duration_pb2, timestamp_pb2

from ._pb import pb2

# What submit() and submit_many() accept for a job: the message itself, or a mapping of its
# fields (see to_sync_request).
RequestLike = Union["pb2.SyncRequest", Mapping[str, Any]]

TERMINAL_STATES = frozenset({pb2.SUCCEEDED, pb2.FAILED, pb2.EXHAUSTED, pb2.CANCELLED})


def is_terminal(state: int) -> bool:
    """SUCCEEDED, FAILED, EXHAUSTED and CANCELLED: no further state change happens by itself."""
    return state in TERMINAL_STATES


def to_sync_request(value: RequestLike) -> pb2.SyncRequest:
    """A SyncRequest from the message itself or from a mapping of its fields.

    The mapping uses the proto's field names (idempotency_key, endpoint, method, path, query,
    headers, body, ordering_key, deadline, labels, correlation_id, policy, priority). For
    convenience `body` may be a str (sent as UTF-8), `headers` a mapping of name to value,
    `deadline` an aware datetime, and `priority` a name ("HIGH"). An unknown field raises
    ValueError naming it.
    """
    if isinstance(value, pb2.SyncRequest):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(
            f"a job is a rebound.v1.SyncRequest or a mapping, not {type(value).__name__}"
        )
    fields = dict(value)
    if isinstance(fields.get("body"), str):
        fields["body"] = fields["body"].encode("utf-8")
    if isinstance(fields.get("headers"), Mapping):
        fields["headers"] = [pb2.Header(name=n, value=v) for n, v in fields["headers"].items()]
    if isinstance(fields.get("deadline"), datetime.datetime):
        fields["deadline"] = to_timestamp(fields["deadline"])
    return pb2.SyncRequest(**fields)


def to_timestamp(when: datetime.datetime) -> timestamp_pb2.Timestamp:
    """A Timestamp of an aware datetime (a naive one would be ambiguous: ValueError)."""
    if when.tzinfo is None:
        raise ValueError("datetime must be timezone-aware (e.g. datetime.now(timezone.utc))")
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when.astimezone(datetime.timezone.utc).replace(tzinfo=None))
    return stamp


def to_duration(length: Union[float, datetime.timedelta]) -> duration_pb2.Duration:
    """A Duration of seconds or a timedelta."""
    seconds = length.total_seconds() if isinstance(length, datetime.timedelta) else float(length)
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def pause_request(
    name: str,
    reason: str,
    until: Optional[datetime.datetime],
    duration: Optional[Union[float, datetime.timedelta]],
) -> pb2.PauseEndpointRequest:
    """A PauseEndpointRequest; `until` and `duration` are exclusive (the server checks it too)."""
    if until is not None and duration is not None:
        raise ValueError("give until or duration, not both")
    request = pb2.PauseEndpointRequest(name=name, reason=reason)
    if until is not None:
        request.until.CopyFrom(to_timestamp(until))
    if duration is not None:
        request.duration.CopyFrom(to_duration(duration))
    return request


def list_request(
    states: Optional[list[int]],
    endpoint: str,
    ordering_key: str,
    label: str,
    wait_reason: int,
    page_size: int,
    page_token: str,
) -> pb2.ListSyncsRequest:
    """A ListSyncsRequest from list()'s arguments."""
    return pb2.ListSyncsRequest(
        states=states or [],
        endpoint=endpoint,
        ordering_key=ordering_key,
        label=label,
        wait_reason=wait_reason,
        page_size=page_size,
        page_token=page_token,
    )


def metadata(tenant: Optional[str], token: Optional[str]) -> tuple[tuple[str, str], ...]:
    """The call metadata of every call: the tenant header and the bearer token, when given."""
    pairs = []
    if tenant:
        pairs.append(("x-rebound-tenant", tenant))
    if token:
        pairs.append(("authorization", f"Bearer {token}"))
    return tuple(pairs)
