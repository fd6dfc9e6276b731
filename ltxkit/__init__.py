"""ltxkit: read, check, restore, repair and produce LTX replicas (Litestream 0.5.x, LiteFS)."""

__version__ = "0.1.0"
