"""Where LTX files live: replica layout, listing, storage backends, and Litestream's restore plan."""
