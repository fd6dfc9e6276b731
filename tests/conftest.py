"""Shared fixtures. Real replicas are made once per module where several tests read them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# hypothesis: a CI profile that stays fast and deterministic
try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
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
