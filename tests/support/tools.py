"""System programs some e2e tests drive (Debian's Chromium, Prometheus), which pip cannot
install. Where one is missing the test skips, saying what to install, so `make test` runs on a
laptop without them; under `.ci/run`, which installs both and sets AUTHCHAIN_REQUIRE_TOOLS=1,
a missing one fails the test instead of skipping it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REQUIRED = os.environ.get("AUTHCHAIN_REQUIRE_TOOLS") == "1"


def need(program: str, install: str) -> Path:
    """The path of `program` (a name on PATH, or an absolute path); skip, or under CI fail,
    naming `install`, if it is not there."""
    found = shutil.which(program)
    if found is not None:
        return Path(found)
    message = f"{program} is not installed ({install}; .ci/run installs it)"
    if REQUIRED:
        pytest.fail(message)
    pytest.skip(message)
