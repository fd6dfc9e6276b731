"""`ltxkit replicate`: stream a live SQLite database into a Litestream-compatible replica, publishing
only files proven to be a correct transition from the previous published state.

`engine` runs the syncs; `source` holds the live database; `wal` (top level) reads SQLite's WAL;
`wal_position` decides whether the WAL continues the published position; `proof` checks a built
file against what was read; `state` keeps the position and the published state's page
checksums beside the database; `hooks` lets tests crash it or damage a file on purpose.
"""

from ltxkit.replicate.engine import Event, FatalError, Options, Replicator

__all__ = ["Event", "FatalError", "Options", "Replicator"]
