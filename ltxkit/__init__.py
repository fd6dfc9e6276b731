"""ltxkit: read, check, restore, repair and produce LTX replicas (LTX v3, as Litestream 0.5.x writes it)."""

__version__ = "0.1.0"
