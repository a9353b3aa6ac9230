"""Fixtures: one real fake-lms and one real rebound-server for the session (tests that need a
server of their own start it themselves), and per test a client with a tenant of its own, so
no test sees another's jobs."""

from __future__ import annotations

import pathlib
import re
from typing import Iterator

import pytest

from rebound_client import Client
from support import FakeLms, ReboundServer, integration_config, unused_port


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("rebound")


@pytest.fixture(scope="session")
def lms(workdir: pathlib.Path) -> Iterator[FakeLms]:
    fake = FakeLms(workdir)
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def server(lms: FakeLms, workdir: pathlib.Path) -> Iterator[ReboundServer]:
    config = integration_config(lms.port, unused_port(), workdir / "rebound.db")
    rebound = ReboundServer(workdir, config)
    yield rebound
    # SIGTERM drains: a clean exit shows that nothing the tests did broke the server.
    assert rebound.stop() == 0


@pytest.fixture
def tenant(request: pytest.FixtureRequest) -> str:
    """The test's own tenant (1-64 of [A-Za-z0-9_.-]), named after it."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[-64:]


@pytest.fixture
def client(server: ReboundServer, tenant: str) -> Iterator[Client]:
    with Client(server.target, tenant=tenant) as rebound:
        yield rebound

