#!/usr/bin/python3
"""Client CPU per job of the Python client: one unary SubmitSync per job vs SubmitSyncStream.

Submits --jobs healthy jobs (fake-lms script 200) twice against a running server:

- unary:  one SubmitSync per job, --in-flight (64) calls at a time (grpc futures on the
          generated stub, the cheapest unary path grpcio offers);
- stream: rebound_client.Client.submit_many over SubmitSyncStream, --window (256) unanswered.

and measures the process's CPU time (time.process_time(): user + system of every thread, gRPC's
included) and wall time of each. The jobs' messages are built before either clock starts, so
both modes are charged for the transport and the client alone. Prints one JSON line:

  {"jobs": N, "unary": {"seconds", "jobs_per_second", "client_cpu_us_per_job", "rejected"},
   "stream": {...}, "ratio_stream_to_unary": cpu per job of stream / of unary}

Exit status 1 when any job was refused. Run it against a local server only (e.g. bench/run.sh's);
it needs Debian's python3-grpcio and python3-protobuf and the generated stubs:

  /usr/bin/python3 bench/python_client_cpu.py --target 127.0.0.1:PORT [--jobs 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_JOBS = 1_000_000


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="the server's host:port")
    parser.add_argument("--jobs", type=int, default=20000, help=f"jobs per mode (1..{MAX_JOBS})")
    parser.add_argument("--in-flight", type=int, default=64, help="unary calls at a time")
    parser.add_argument("--window", type=int, default=256, help="stream jobs unanswered at a time")
    parser.add_argument("--endpoint", default="lms", help="endpoint of every job")
    parser.add_argument("--path", default="/api/v1/courses/1/grades", help="path of every job")
    parser.add_argument("--tenant", help="x-rebound-tenant of every call")
    parser.add_argument("--key-prefix", default=f"pycpu-{os.getpid()}-{time.time_ns()}-",
                        help="idempotency key of job i of a mode: PREFIX<mode>-<i>")
    parser.add_argument("--stubs", default=str(ROOT / "build" / "client" / "python" / "gen"),
                        help="directory of the generated Python stubs")
    args = parser.parse_args(argv)
    if not 1 <= args.jobs <= MAX_JOBS:
        parser.error(f"--jobs: 1 to {MAX_JOBS}")
    if args.in_flight < 1 or args.window < 1:
        parser.error("--in-flight and --window: at least 1")
    return args


def requests(pb2, args: argparse.Namespace, mode: str) -> list:
    """The jobs of one mode, as loadgen's healthy mix (bench/loadgen.cc FillRequest)."""
    return [
        pb2.SyncRequest(
            idempotency_key=f"{args.key_prefix}{mode}-{i}",
            endpoint=args.endpoint,
            method="POST",
            path=args.path,
            query="script=200",
            body=f'{{"student":{i},"score":95}}'.encode(),
            headers=[pb2.Header(name="Content-Type", value="application/json")],
        )
        for i in range(args.jobs)
    ]


def measure(run) -> dict:
    """Wall and CPU time of run(), which returns the number of refused jobs."""
    cpu, wall = time.process_time(), time.perf_counter()
    rejected = run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"rejected": rejected, "seconds": wall, "cpu": cpu}


def unary(stub, pb2, metadata, jobs: list, in_flight: int) -> int:
    """One SubmitSync per job, at most `in_flight` unanswered; the count of refused ones."""
    room = threading.Semaphore(in_flight)
    lock = threading.Lock()
    rejected = 0

    def done(future) -> None:
        nonlocal rejected
        if future.exception() is not None:
            with lock:
                rejected += 1
        room.release()

    for job in jobs:
        room.acquire()
        call = stub.SubmitSync.future(
            pb2.SubmitSyncRequest(request=job), metadata=metadata, timeout=60
        )
        call.add_done_callback(done)
    for _ in range(in_flight):  # every call has answered once all the room is back
        room.acquire()
    return rejected


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sys.path[:0] = [args.stubs, str(ROOT / "client" / "python")]
    import grpc
    from rebound_client import NO_RETRY, Client, pb2
    from rebound_client._pb import pb2_grpc

    metadata = (("x-rebound-tenant", args.tenant),) if args.tenant else ()
    unary_jobs, stream_jobs = requests(pb2, args, "unary"), requests(pb2, args, "stream")
    results = {}
    with grpc.insecure_channel(args.target) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)  # connected before the clocks start
        stub = pb2_grpc.ReboundStub(channel)
        results["unary"] = measure(lambda: unary(stub, pb2, metadata, unary_jobs, args.in_flight))
    # No client retries: a refused job is counted, not resent, so both modes do the same work.
    with Client(args.target, tenant=args.tenant, retry=NO_RETRY) as client:
        client.list(page_size=1)  # connected before the clocks start
        results["stream"] = measure(
            lambda: sum(not r.ok for r in client.submit_many(stream_jobs, window=args.window)))

    out: dict = {"jobs": args.jobs}
    for mode, r in results.items():
        out[mode] = {
            "seconds": round(r["seconds"], 3),
            "jobs_per_second": round(args.jobs / r["seconds"]),
            "client_cpu_us_per_job": round(r["cpu"] * 1e6 / args.jobs, 1),
            "rejected": r["rejected"],
        }
    out["ratio_stream_to_unary"] = round(
        out["stream"]["client_cpu_us_per_job"] / out["unary"]["client_cpu_us_per_job"], 3)
    print(json.dumps(out), flush=True)
    return 1 if any(r["rejected"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
