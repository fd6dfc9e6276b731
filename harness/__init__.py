"""Drive the REAL Litestream 0.5.x: the shared harness of the tests, `make demo` and `make bench`.

Why this exists: ltxkit must agree with what Litestream actually writes and with what
``litestream restore`` actually accepts, so tests drive the real binary instead of hand-made
fixtures.  Everything here is test scaffolding; nothing in ``ltxkit/`` may import it.

Two ways to produce a replica:

* :class:`Replicator` runs ``litestream replicate -config <generated yml>`` as a daemon with very
  short intervals, so L1/L2 compactions and L9 snapshots appear within a couple of seconds.  It
  enables Litestream's control socket (a Unix socket, never TCP) so :meth:`Replicator.sync` can ask
  the daemon for a synchronous "sync and upload" instead of sleeping and hoping.
* :func:`replicate_once` runs ``litestream replicate -once`` (optionally ``-force-snapshot``).  Each
  call turns everything new in the WAL into exactly one L0 file (and, with ``-force-snapshot``,
  one L9 snapshot).  It never compacts, so it is the fastest deterministic way to get an L0 chain.

Gotcha for the ``-once`` flow: when the last connection to a WAL database closes, SQLite checkpoints
and deletes the WAL.  Between two ``-once`` runs no Litestream connection is open, so a writer that
opens and closes its own connection would wipe the WAL and the next run would upload a full-database
L0 file instead of an increment.  :func:`pin_wal` keeps one idle connection open to prevent that;
:func:`write_rows`/:func:`execute` reuse the pinned connection automatically.

Damage builders (``make_*_shape``) start from a real replica and then damage it the way the failures
in ``/work/shared/LANDSCAPE.md`` do.  Rewriting an LTX file needs an encoder; ltxkit's own is being
written concurrently, so a tiny private codec (``_read_ltx``/``_encode_ltx``/``_verify_ltx_bytes``)
lives here.  Note that a re-encoded file does NOT keep Litestream's file checksum even though the
checksum covers decompressed pages: it also covers the page index, whose offsets/sizes depend on the
LZ4 encoder (python-lz4 and Go's pierrec/lz4 produce different block sizes).  The smoke tests check
that real files verify under ``_verify_ltx_bytes`` and that a replica whose every file was re-encoded
here still restores with real Litestream.
"""

from __future__ import annotations

from harness.binary import (  # noqa: F401
    _BIN_OVERRIDE,
    _LIVE,
    _LIVE_LOCK,
    _SOCKDIRS,
    _reap_all,
    have_litestream,
    litestream_bin,
    release_bin,
    using_litestream,
)
from harness.common import (  # noqa: F401
    FAST_LEVELS,
    FAST_MONITOR,
    FAST_SNAPSHOT,
    FAST_SYNC,
    LTX_NAME_RE,
    SNAPSHOT_LEVEL,
    TABLE,
)
from harness.db import (  # noqa: F401
    _PINNED,
    _conn,
    _connect,
    _key,
    checkpoint,
    db_bytes_equal,
    db_content_equal,
    db_image,
    execute,
    integrity_check,
    logical_dump,
    make_db,
    pin_wal,
    row_count,
    row_payload,
    write_rows,
)
from harness.files import (  # noqa: F401
    LtxName,
    list_ltx,
    local_max_txid,
    ltx_timestamp_ms,
    max_txid,
    rfc3339_ms,
    tree_digest,
)
from harness.litestream import (  # noqa: F401
    Replicator,
    _build_config,
    _deep_merge,
    _UnixHTTPConnection,
    base_config,
    replicate_once,
    restore,
    write_config,
)
from harness.ltxcodec import (  # noqa: F401
    _CHK,
    _FLAG_COMPRESSED,
    _FRAME_HDR,
    _HDR,
    _encode_ltx,
    _Ltx,
    _read_ltx,
    _rewrite_ltx,
    _uvarint,
    _verify_ltx_bytes,
    _write_preserving_mtime,
)
from harness.ltxkit_replicate import LtxkitReplicator, Writer, run_once  # noqa: F401
from harness.replicas import (  # noqa: F401
    DamagedReplica,
    Mark,
    Replica,
    _mark,
    _once_chain,
    _row_bytes_for,
    dump_sha256,
    make_once_replica,
    make_replica,
)
from harness.shapes import (  # noqa: F401
    _fields,
    _kill9_checkpoint_history,
    _snapshot_holes,
    make_flipped_byte_shape,
    make_growth_hole_shape,
    make_mixed_state_shape,
    make_seed_shape,
    make_stale_page_shape,
    make_truncated_shape,
    make_txid_gap_shape,
    quick_check,
)
