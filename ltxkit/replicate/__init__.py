"""`ltxkit replicate`: stream a live SQLite database into a Litestream-compatible replica, publishing
only files proven to be a correct transition from the previous published state.

`engine` runs the syncs; `source` holds the live database; `wal` (top level) reads SQLite's WAL;
`wal_position` decides whether the WAL continues the published position; `proof` checks a built
file against what was read; `state` keeps the position and the published state's page
checksums beside the database; `hooks` lets tests crash it or damage a file on purpose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ltxkit.replicate.engine import Event, FatalError, Options, Replicator

__all__ = ["Event", "FatalError", "Options", "Replicator"]


def __getattr__(name: str) -> Any:
    """The engine on first use: `verify` reads `pagemap` and `state` from this package, and must
    not pay for the replicator's imports (numpy, the WAL reader) at every start-up."""
    if name in __all__:
        from ltxkit.replicate import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
