"""Test hooks: kill the replicator at a named step, or damage the next file it builds.

Tests drive a real `ltxkit replicate` process, so the hooks are read from the environment.
Neither does anything unless its variable is set; both exist to prove what a crash or a bad
file can and cannot do to a replica.

* `LTXKIT_TEST_CRASH_AT=STEP[:N]`: SIGKILL this process the Nth time (default 1st) it reaches
  STEP: `encode` (a file half-written), `written` (built, fsynced, not yet proven), `published`
  (published, position not saved), `checkpoint` (write lock held, checkpoint about to run),
  `checkpointed` (checkpoint done, pin not yet taken again).
* `LTXKIT_TEST_CORRUPT=flip|drop`: damage the first file built: `flip` inverts one byte of a
  page's compressed data, `drop` re-encodes the file without its last page (well-formed, but not
  the transition it was meant to be; the first increment, as no snapshot can be encoded so).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from ltxkit.format.decoder import LTXReader
from ltxkit.format.encoder import LTXWriter
from ltxkit.format.schema import FRAME_PREFIX_SIZE, HEADER_SIZE

STEPS = ("encode", "written", "published", "checkpoint", "checkpointed")
CRASH_ENV = "LTXKIT_TEST_CRASH_AT"
CORRUPT_ENV = "LTXKIT_TEST_CORRUPT"


class Hooks:
    def __init__(self, crash_at: str | None = None, corrupt: str | None = None) -> None:
        self.crash_step, self.crash_count = None, 1
        if crash_at:
            step, _, count = crash_at.partition(":")
            if step not in STEPS:
                raise ValueError(f"{CRASH_ENV}: unknown step {step!r} (one of {', '.join(STEPS)})")
            self.crash_step, self.crash_count = step, int(count or 1)
        if corrupt not in (None, "", "flip", "drop"):
            raise ValueError(f"{CORRUPT_ENV}: {corrupt!r} is not flip or drop")
        self.corrupt = corrupt or None
        self._seen = 0

    @classmethod
    def from_env(cls) -> Hooks:
        return cls(os.environ.get(CRASH_ENV), os.environ.get(CORRUPT_ENV))

    def step(self, name: str) -> None:
        if name == self.crash_step:
            self._seen += 1
            if self._seen == self.crash_count:
                os.kill(os.getpid(), signal.SIGKILL)

    def damage(self, path: Path) -> None:
        """Damage the file at `path` (once), as LTXKIT_TEST_CORRUPT says."""
        if self.corrupt is None:
            return
        how, self.corrupt = self.corrupt, None
        data = bytearray(path.read_bytes())
        if how == "flip":
            data[HEADER_SIZE + FRAME_PREFIX_SIZE + 2] ^= 0xFF
            path.write_bytes(bytes(data))
            return
        reader = LTXReader.from_bytes(bytes(data))
        if reader.header.is_snapshot:  # the encoder refuses a snapshot with a hole: wait for an increment
            self.corrupt = how
            return
        pages = list(reader.pages())
        with path.open("wb") as fh:
            writer = LTXWriter(fh, reader.header)
            for pgno, page in pages[:-1]:
                writer.write_page(pgno, page)
            writer.close()
