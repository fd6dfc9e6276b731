"""Names every part of the harness shares: the test table, the LTX file-name pattern, fast intervals."""

from __future__ import annotations

import re

TABLE = "t"
LTX_NAME_RE = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$")
SNAPSHOT_LEVEL = 9

# Intervals that make every background job of the daemon fire within ~1 s.  Compaction and
# snapshot monitors run at wall-clock multiples of their interval (time.Truncate), so the first
# one may come up to one interval after a write.
FAST_MONITOR = "100ms"
FAST_SYNC = "100ms"
FAST_LEVELS = ("500ms", "1s")
FAST_SNAPSHOT = "1s"
