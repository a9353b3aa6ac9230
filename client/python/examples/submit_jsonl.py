#!/usr/bin/python3
"""Submits the jobs of a JSON Lines file to Rebound and prints one JSON line per job.

Each input line is one rebound.v1.SyncRequest in protobuf JSON, as for `reboundctl submit
--file` (body base64, field names in lowerCamelCase or as in the proto):

    {"idempotencyKey": "attendance-7-1", "endpoint": "canvas", "method": "POST",
     "path": "/api/v1/courses/7/attendance", "body": "eyJzdHVkZW50IjoxfQ=="}

Output, in input order: {"line": N, "jobId": ..., "deduplicated": ...} for an accepted job
(with --wait, also its final "state"), or {"line": N, "error": {"code", "field", "message"}}.
Exit status 0 when every job was accepted (and, with --wait, SUCCEEDED), 1 otherwise.

    PYTHONPATH=build/client/python/gen:client/python \\
        /usr/bin/python3 client/python/examples/submit_jsonl.py --target 127.0.0.1:50051 jobs.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Iterator, TextIO

from google.protobuf import json_format

from rebound_client import Client, ReboundError, pb2


def read_jobs(lines: TextIO) -> Iterator[pb2.SyncRequest]:
    """One SyncRequest per non-empty line; a line that does not parse stops the run, naming it."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield json_format.Parse(line, pb2.SyncRequest())
        except json_format.ParseError as error:
            raise SystemExit(f"line {number}: {error}") from None


def error_json(error: ReboundError) -> dict:
    return {"code": error.code.name, "field": error.field, "message": error.message}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="JSON Lines file of SyncRequests, or - for stdin")
    parser.add_argument("--target", default="127.0.0.1:50051", help="the server (host:port)")
    parser.add_argument("--tenant", help="x-rebound-tenant of every call")
    parser.add_argument("--token", help="bearer token of every call")
    parser.add_argument("--window", type=int, default=256, help="jobs unanswered at a time")
    parser.add_argument("--wait", type=float, metavar="SECONDS",
                        help="then wait up to SECONDS for each job to end and print its state")
    args = parser.parse_args(argv)

    source = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    with source, Client(args.target, tenant=args.tenant, token=args.token) as rebound:
        results = sorted(rebound.submit_many(read_jobs(source), window=args.window),
                         key=lambda r: r.index)
        all_good = True
        for result in results:
            line: dict = {"line": result.index + 1}
            if result.ok:
                line.update(jobId=result.job_id, deduplicated=result.deduplicated)
                if args.wait is not None:
                    try:
                        state = rebound.await_terminal(result.job_id, timeout=args.wait).state
                        line["state"] = pb2.SyncState.Name(state)
                        all_good &= state == pb2.SUCCEEDED
                    except ReboundError as error:
                        line["error"] = error_json(error)
                        all_good = False
            else:
                line["error"] = error_json(result.error)
                all_good = False
            print(json.dumps(line), flush=True)
    return 0 if all_good else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
