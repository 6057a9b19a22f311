"""End-to-end fixtures: the whole local stack on free ports, driven only over HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from local.http import http
from local.stack import LocalStack, Ports

__all__ = ["free_port", "free_ports", "http", "local_stack"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports() -> Ports:
    return Ports(api=free_port(), aws=free_port(), stripe=free_port())  # the function URL's: any free one


@pytest.fixture(scope="module")
def local_stack() -> Iterator[LocalStack]:
    # No scheduled catch-up: it would recover what a test drops at a moment no test controls
    # (tests/integration/test_reconcile_schedule.py runs the scheduled action itself).
    with LocalStack(ports=free_ports(), reconcile_seconds=0) as stack:
        yield stack
