"""The examples in client/python/examples run as written against the real server."""

from __future__ import annotations

import base64
import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

from support import FakeLms, ReboundServer

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jsonl_job(key: str, path: str, script: str) -> str:
    body = base64.b64encode(json.dumps({"student": 1, "present": True}).encode()).decode()
    return json.dumps({"idempotencyKey": key, "endpoint": "lms", "method": "POST", "path": path,
                       "query": f"script={script}", "body": body})


def run_script(
    server: ReboundServer, tenant: str, jobs_file: pathlib.Path
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "submit_jsonl.py"), "--target", server.target,
         "--tenant", tenant, "--window", "2", "--wait", "20", str(jobs_file)],
        capture_output=True, text=True, timeout=60,
    )


def test_the_jsonl_script_prints_a_line_per_job_and_fails_when_one_does(
    server: ReboundServer, tenant: str, tmp_path: pathlib.Path, lms: FakeLms
) -> None:
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text("\n".join([
        jsonl_job(f"{tenant}-1", "/api/v1/courses/7/attendance", "200"),
        jsonl_job(f"{tenant}-2", "/api/v1/courses/7/attendance", "503,200"),
        jsonl_job(f"{tenant}-3", "/admin", "200"),
        jsonl_job(f"{tenant}-4", "/api/v1/courses/7/attendance", "400"),
    ]) + "\n")

    run = run_script(server, tenant, jobs_file)

    assert run.returncode == 1, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["line"] for line in lines] == [1, 2, 3, 4]
    assert [line.get("state") for line in lines] == ["SUCCEEDED", "SUCCEEDED", None, "FAILED"]
    assert lines[2]["error"]["code"] == "INVALID_ARGUMENT"
    assert lines[2]["error"]["field"] == "request.path"
    assert lms.stats(f"{tenant}-2")["statuses"] == [503, 200]

    # Only the good ones again: each is the job it was before, and the run succeeds.
    jobs_file.write_text("\n".join(jobs_file.read_text().splitlines()[:2]) + "\n")
    again = run_script(server, tenant, jobs_file)
    assert again.returncode == 0, again.stderr
    repeated = [json.loads(line) for line in again.stdout.splitlines()]
    assert [(r["jobId"], r["deduplicated"]) for r in repeated] == [
        (lines[0]["jobId"], True), (lines[1]["jobId"], True)]


def test_the_airflow_style_task_pushes_grades_and_raises_on_failures(
    server: ReboundServer, tenant: str, lms: FakeLms
) -> None:
    task = load_example("grade_sync_task")
    changes = [
        {"course": 101, "assignment": 3, "student": 42, "grade": "B", "version": 1},
        {"course": 101, "assignment": 3, "student": 42, "grade": "A-", "version": 2},
        {"course": 101, "assignment": 3, "student": 43, "grade": "C+", "version": 1},
    ]
    context = {"run_id": "scheduled__2026-12-01T02:00:00", "ds": "2026-12-01"}

    pushed = task.sync_grade_changes(
        changes, rebound_target=server.target, tenant=tenant, endpoint="lms", timeout=20, **context
    )

    assert pushed["succeeded"] == 3 and len(set(pushed["job_ids"])) == 3
    assert lms.stats("grade-101-3-42-v2")["effects"] == 1
    # A re-run of the task posts nothing twice: the same keys return the same jobs.
    rerun = task.sync_grade_changes(
        changes, rebound_target=server.target, tenant=tenant, endpoint="lms", timeout=20,
        run_id="manual__rerun",
    )
    assert rerun["job_ids"] == pushed["job_ids"]
    assert lms.stats("grade-101-3-42-v2")["effects"] == 1

    refused = {"course": 102, "assignment": 3, "student": "../admin", "grade": "A", "version": 1}
    unreachable = {"course": 102, "assignment": 3, "student": 44, "grade": "A", "version": 1}
    with pytest.raises(task.GradeSyncFailed) as failed:
        # `dead` is an endpoint where nothing listens: its job is retried, then EXHAUSTED.
        task.sync_grade_changes([refused, unreachable], rebound_target=server.target, tenant=tenant,
                                endpoint="dead", timeout=20, **context)
    failures = failed.value.failures
    assert sorted(failures) == ["grade-102-3-../admin-v1", "grade-102-3-44-v1"]
    assert failures["grade-102-3-../admin-v1"].startswith("INVALID_ARGUMENT: request.path:")
    assert failures["grade-102-3-44-v1"].startswith("EXHAUSTED")
