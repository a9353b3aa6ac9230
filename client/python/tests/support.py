"""Test support: the real fake-lms and rebound-server binaries as child processes, and their jobs.

As tests/integration/harness.h: each process listens on 127.0.0.1 port 0 and writes the port it
bound to a port file (after the server's health is SERVING), which is how the tests find it.
Every process is stopped by its PID (SIGTERM, then SIGKILL after a grace period) and reaped;
should pytest itself die, PR_SET_PDEATHSIG has the kernel kill the children too.
"""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from typing import Optional

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def binary(env_name: str) -> str:
    """The path of a binary of the C++ build, from the environment ctest sets."""
    path = os.environ.get(env_name)
    if not path:
        raise RuntimeError(f"{env_name} is not set: run these tests through ctest -R python")
    return path


def unused_port() -> int:
    """A port that was free a moment ago and has nothing listening now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChildProcess:
    """A child process with its output in `log`, stopped and reaped by PID."""

    def __init__(self, argv: list[str], log: pathlib.Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for_port_file(self, path: pathlib.Path, deadline: float = 30.0) -> int:
        """The port the process wrote to `path` (written whole, by rename); fails early when the
        process exits."""
        give_up = time.monotonic() + deadline
        while True:
            try:
                port = int(path.read_text())
                if port > 0:
                    return port
            except (FileNotFoundError, ValueError):
                pass
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.popen.args[0]} exited with {self.popen.returncode}:\n"
                    + self.log.read_text()
                )
            if time.monotonic() > give_up:
                raise RuntimeError(f"{self.popen.args[0]} wrote no port file in {deadline}s")
            time.sleep(0.005)  # polling a file; there is nothing to wait on

    def stop(self, grace: float = 10.0) -> Optional[int]:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code (negative: a signal)."""
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        return self.popen.returncode


class FakeLms:
    """The real fake-lms (tools/fake-lms) on a port of its own choosing."""

    def __init__(self, directory: pathlib.Path) -> None:
        port_file = directory / "fake-lms.port"
        self.process = ChildProcess(
            [binary("FAKE_LMS_BIN"), "--listen", "127.0.0.1:0", "--port-file", str(port_file)],
            directory / "fake-lms.log",
        )
        self.port = self.process.wait_for_port_file(port_file, deadline=10)

    def stats(self, key: str) -> dict:
        """GET /__stats?key=K: that key's counters (effects, repeats, ...)."""
        url = f"http://127.0.0.1:{self.port}/__stats?key={urllib.parse.quote(key)}"
        with urllib.request.urlopen(url, timeout=10) as reply:
            return json.load(reply)

    def stop(self) -> None:
        self.process.stop()


def integration_config(lms_port: int, dead_port: int, db: pathlib.Path, grpc_port: int = 0,
                       extra_server: str = "") -> str:
    """tests/integration/harness.h's IntegrationConfig: millisecond policies so retries happen in
    test time; `lms`, `slow` and `canvas` point at fake-lms, `dead` at a port where nothing
    listens.
    `extra_server` adds lines to the server section (indented by two spaces)."""
    return f"""
server:
  grpc_listen: 127.0.0.1:{grpc_port}
  metrics_listen: 127.0.0.1:0
  max_batch_size: 10
  max_body_bytes: 1024
  shutdown_grace: 2s
{extra_server}store:
  path: {db}
idempotency:
  retention: 1h
policies:
  - name: default
    backoff: {{initial: 20ms, max: 200ms, multiplier: 2, jitter: none}}
    throttle_backoff: {{initial: 20ms, max: 200ms, jitter: none}}
    limits: {{max_attempts: 5, max_elapsed: 1m, max_retry_after: 5s}}
endpoints:
  - name: lms
    base_url: http://127.0.0.1:{lms_port}
    allowed_path_prefixes: [/api/v1/]
    connect_timeout: 500ms
    timeout: 500ms
    max_in_flight: 64
    policy: default
    # Millisecond protection, as the policies (harness.h says why).
    circuit_breaker: {{open_duration: 50ms, max_open_duration: 200ms}}
    slow_start: {{window: 0s}}
  - name: slow
    base_url: http://127.0.0.1:{lms_port}
    allowed_path_prefixes: [/api/v1/]
    timeout: 20s
    max_in_flight: 256
    policy: default
  # Only the pause test pauses it, so no other test waits behind a pause.
  - name: canvas
    base_url: http://127.0.0.1:{lms_port}
    allowed_path_prefixes: [/api/v1/]
    policy: default
    slow_start: {{window: 0s}}
  - name: dead
    base_url: http://127.0.0.1:{dead_port}
    allowed_path_prefixes: [/api/]
    connect_timeout: 200ms
    timeout: 500ms
    policy: default
"""


class ReboundServer:
    """The real rebound-server on `config_text` (written to `directory`/rebound.yaml)."""

    def __init__(self, directory: pathlib.Path, config_text: str, name: str = "server") -> None:
        config = directory / f"{name}.yaml"
        config.write_text(config_text)
        port_file = directory / f"{name}.port"
        port_file.unlink(missing_ok=True)
        self.process = ChildProcess(
            [binary("REBOUND_SERVER_BIN"), "--config", str(config), "--port-file", str(port_file),
             "--metrics-port-file", str(directory / f"{name}.metrics-port")],
            directory / f"{name}.log",
        )
        self.port = self.process.wait_for_port_file(port_file)
        self.target = f"127.0.0.1:{self.port}"

    def stop(self) -> Optional[int]:
        """SIGTERM (the server drains and exits 0)."""
        return self.process.stop()


def job(key: str, script: str = "200", endpoint: str = "lms", **fields: object) -> dict:
    """A job against fake-lms whose behaviour is `script` (tools/fake-lms/README.md)."""
    request = {
        "idempotency_key": key,
        "endpoint": endpoint,
        "method": "POST",
        "path": "/api/v1/courses/7/grades",
        "query": f"script={script}",
        "body": '{"score": 92}',
    }
    request.update(fields)
    return request
