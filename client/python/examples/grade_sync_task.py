"""An Airflow-style task: push a batch of grade changes to the LMS through Rebound.

`sync_grade_changes` has the shape of a PythonOperator callable (keyword arguments from
`op_kwargs`, then Airflow's context as **context); it imports nothing from Airflow:

    PythonOperator(
        task_id="push_grades",
        python_callable=sync_grade_changes,
        op_kwargs={"rebound_target": "rebound.sis.svc:50051", "tenant": "district-7",
                   "changes": "{{ ti.xcom_pull(task_ids='extract_grade_changes') }}"},
    )

Each change becomes one Canvas-style grade PUT. Its idempotency key names the change itself
(course, assignment, student, version), not the DAG run, so a retried or re-run task resubmits
the same jobs and Rebound returns the existing ones instead of posting grades twice. Changes of
one student's submission share an ordering key, so they land in order.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from rebound_client import Client, pb2


class GradeSyncFailed(Exception):
    """Some grade changes were refused or did not land; `failures` maps key to reason."""

    def __init__(self, failures: dict[str, str]) -> None:
        super().__init__(f"{len(failures)} grade changes failed: " + "; ".join(
            f"{key}: {why}" for key, why in sorted(failures.items())))
        self.failures = failures


def grade_change_job(change: Mapping[str, Any], endpoint: str, run_id: str) -> dict[str, Any]:
    """The Rebound job of one grade change {course, assignment, student, grade, version}."""
    course, assignment, student = change["course"], change["assignment"], change["student"]
    return {
        "idempotency_key": f"grade-{course}-{assignment}-{student}-v{change['version']}",
        "endpoint": endpoint,
        "method": "PUT",
        "path": f"/api/v1/courses/{course}/assignments/{assignment}/submissions/{student}",
        "body": json.dumps({"submission": {"posted_grade": change["grade"]}}),
        "ordering_key": f"grade-{course}-{assignment}-{student}",
        # Labels are not part of a job's identity: a re-run with another run id still dedups.
        "labels": {"pipeline": "gradebook", "dag_run": run_id},
    }


def sync_grade_changes(
    changes: Iterable[Mapping[str, Any]],
    rebound_target: str,
    tenant: str,
    endpoint: str = "canvas",
    timeout: float = 600.0,
    **context: Any,
) -> dict[str, Any]:
    """Submits every change with submit_many and waits for each job to end.

    Returns {"succeeded": n, "job_ids": [...]} (Airflow pushes it to XCom), the ids in the
    changes' order. Raises
    GradeSyncFailed naming every change that was refused (e.g. an invalid path) or ended
    FAILED, EXHAUSTED or CANCELLED, so the task fails and its retry resubmits safely.
    """
    run_id = str(context.get("run_id", "manual"))
    failures: dict[str, str] = {}
    job_ids: list[str] = []
    with Client(rebound_target, tenant=tenant) as rebound:
        jobs = [grade_change_job(change, endpoint, run_id) for change in changes]
        # In the changes' order, so job_ids[i] is the job of changes[i].
        for result in sorted(rebound.submit_many(jobs), key=lambda r: r.index):
            if result.ok:
                job_ids.append(result.job_id)
            else:
                failures[result.request.idempotency_key] = str(result.error)
        for job_id in job_ids:
            job = rebound.await_terminal(job_id, timeout=timeout)
            if job.state != pb2.SUCCEEDED:
                failures[job.request.idempotency_key] = (
                    f"{pb2.SyncState.Name(job.state)}: {job.last_decision}"
                )
    if failures:
        raise GradeSyncFailed(failures)
    return {"succeeded": len(job_ids), "job_ids": job_ids}
