"""Unit tests run in this process alone: any test here that listens on a socket or starts a
subprocess fails, naming what it tried (servers and processes belong in tests/integration)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest


@pytest.fixture(autouse=True)
def _no_servers_or_subprocesses(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def listen(self: socket.socket, *args: Any) -> NoReturn:
        raise AssertionError(f"a unit test listens on {self.getsockname()}: use tests/integration")

    def spawn(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> NoReturn:
        raise AssertionError(f"a unit test starts a subprocess {args!r}: use tests/integration")

    monkeypatch.setattr(socket.socket, "listen", listen)
    monkeypatch.setattr(subprocess.Popen, "_execute_child", spawn)
    yield
