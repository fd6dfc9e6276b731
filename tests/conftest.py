"""Shared fixtures. Real replicas are made once per module where several tests read them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# hypothesis: CI (CI=true) is deterministic, a local run explores new examples every time, and
# LTXKIT_LONG=1 is the long local profile (tests scale their own example counts with `examples`)
LONG = os.environ.get("LTXKIT_LONG") == "1"


def examples(n: int) -> int:
    """A property's example count: `n` by default, twenty times more under LTXKIT_LONG=1."""
    return n * 20 if LONG else n


try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile(
        "long", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=2000
    )
    default = "ci" if os.environ.get("CI", "").lower() in ("true", "1") else "long" if LONG else "dev"
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", default))
except ImportError:  # pragma: no cover
    pass


@pytest.fixture
def run_ltxkit():
    """Run the CLI as a user would (a subprocess), returning the CompletedProcess."""
    import subprocess

    def run(*args: str, input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from ltxkit.cli import main; main()", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            cwd=ROOT,
        )

    return run
