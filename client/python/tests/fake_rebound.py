"""A scripted stand-in for the Rebound server's submit RPCs, for what the real server cannot be made
to do on cue: fail a given number of submits UNAVAILABLE, break a SubmitSyncStream half way,
answer a stream in reverse order. A real gRPC server (grpcio) on 127.0.0.1 port 0; every other
RPC answers UNIMPLEMENTED.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
from typing import Callable, Iterator, Optional

import grpc

from rebound_client import pb2
from rebound.v1 import rebound_pb2_grpc


@dataclasses.dataclass
class StreamScript:
    """How one SubmitSyncStream call behaves.

    Attributes:
        abort_at_once: end the stream with this code before reading anything.
        break_after: answer this many jobs, then end the stream UNAVAILABLE.
        reverse: read every job until the client half-closes, then answer them last first
            (the client's window must hold them all).
        code_of: the google.rpc.Code answered for a job (0: accepted).
    """

    abort_at_once: Optional[grpc.StatusCode] = None
    break_after: Optional[int] = None
    reverse: bool = False
    code_of: Callable[[pb2.SyncRequest], int] = lambda request: 0


class ScriptedRebound(rebound_pb2_grpc.ReboundServicer):
    """SubmitSync fails with the codes in `submit_errors` (one per call, in order), then accepts;
    each SubmitSyncStream follows the next StreamScript of `streams` (the last one repeats)."""

    def __init__(self) -> None:
        self.submit_errors: list[grpc.StatusCode] = []
        self.submit_calls = 0
        self.streams: list[StreamScript] = [StreamScript()]
        # Sequences received, per stream call.
        self.received: list[list[int]] = []
        self._lock = threading.Lock()

    def SubmitSync(
        self, request: pb2.SubmitSyncRequest, context: grpc.ServicerContext
    ) -> pb2.SubmitSyncResponse:
        with self._lock:
            self.submit_calls += 1
            error = self.submit_errors.pop(0) if self.submit_errors else None
        if error is not None:
            context.abort(error, "scripted failure")
        return pb2.SubmitSyncResponse(job_id=f"j{self.submit_calls}", state=pb2.QUEUED)

    def SubmitSyncStream(
        self, request_iterator: Iterator[pb2.SubmitSyncStreamRequest], context: grpc.ServicerContext
    ) -> Iterator[pb2.SubmitSyncStreamResponse]:
        with self._lock:
            script = self.streams[min(len(self.received), len(self.streams) - 1)]
            received: list[int] = []
            self.received.append(received)
        if script.abort_at_once is not None:
            context.abort(script.abort_at_once, "scripted stream failure")
        if script.reverse:
            messages = list(request_iterator)
            received.extend(m.sequence for m in messages)
            for message in reversed(messages):
                yield self._answer(message, script)
            return
        for message in request_iterator:
            if script.break_after is not None and len(received) == script.break_after:
                context.abort(grpc.StatusCode.UNAVAILABLE, "scripted: server shutting down")
            received.append(message.sequence)
            yield self._answer(message, script)

    @staticmethod
    def _answer(
        message: pb2.SubmitSyncStreamRequest, script: StreamScript
    ) -> pb2.SubmitSyncStreamResponse:
        code = script.code_of(message.request)
        if code != 0:
            return pb2.SubmitSyncStreamResponse(
                sequence=message.sequence, code=code, message="scripted"
            )
        return pb2.SubmitSyncStreamResponse(
            sequence=message.sequence,
            code=0,
            result=pb2.SubmitSyncResponse(job_id=f"j{message.sequence + 1}", state=pb2.QUEUED),
        )


class FakeServer:
    """Serves a ScriptedRebound on 127.0.0.1, port chosen by the kernel."""

    def __init__(self) -> None:
        self.rebound = ScriptedRebound()
        self._server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
        rebound_pb2_grpc.add_ReboundServicer_to_server(self.rebound, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None)


class FakeTime:
    """A monotonic clock that only a sleep moves, and the sleeps it was asked for."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
