"""The declarative LTX v3 layout: the single description of every fixed field ltxkit reads or writes.

The `construct` declarations below describe the header, the page frame header and its size
prefix, the page index and the trailer. Nothing else in ltxkit spells an offset or a field width:
the encoder, decoder and verifier use `struct.Struct` forms *derived* from these declarations
(`derive_struct`), and tests prove both forms agree byte for byte.

The derivation runs ahead of time, not at every start-up: importing construct costs about 70 ms,
a tenth of a whole `ltxkit verify` of a 300 MB file. `python -m ltxkit.format.declaration`
writes the derived formats to `ltxkit/format/layout.py` (`make layout`), and a test fails while
that file is not exactly what these declarations give.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import construct as cs

HEADER = cs.Struct(
    "magic" / cs.Bytes(4),
    "flags" / cs.Int32ub,
    "page_size" / cs.Int32ub,
    "commit" / cs.Int32ub,
    "min_txid" / cs.Int64ub,
    "max_txid" / cs.Int64ub,
    "timestamp" / cs.Int64sb,
    "pre_apply_checksum" / cs.Int64ub,
    "wal_offset" / cs.Int64sb,
    "wal_size" / cs.Int64sb,
    "wal_salt1" / cs.Int32ub,
    "wal_salt2" / cs.Int32ub,
    "node_id" / cs.Int64ub,
    "reserved" / cs.Bytes(20),
)

PAGE_HEADER = cs.Struct(
    "pgno" / cs.Int32ub,
    "flags" / cs.Int16ub,
)

SIZE_PREFIX = cs.Struct("size" / cs.Int32ub)

#: One page index element; a lone pgno of 0 ends the list.
INDEX_ENTRY = cs.Struct(
    "pgno" / cs.VarInt,
    "offset" / cs.If(cs.this.pgno != 0, cs.VarInt),
    "size" / cs.If(cs.this.pgno != 0, cs.VarInt),
)

PAGE_INDEX = cs.Struct(
    "entries" / cs.RepeatUntil(lambda obj, lst, ctx: obj.pgno == 0, INDEX_ENTRY),
    "index_size" / cs.Int64ub,
)

INDEX_SIZE_FIELD = cs.Struct("index_size" / cs.Int64ub)

TRAILER = cs.Struct(
    "post_apply_checksum" / cs.Int64ub,
    "file_checksum" / cs.Int64ub,
)


#: the fixed-size declarations whose struct forms the rest of ltxkit uses, by the name it uses
FIXED = {
    "HEADER": HEADER,
    "PAGE_HEADER": PAGE_HEADER,
    "SIZE_PREFIX": SIZE_PREFIX,
    "INDEX_SIZE_FIELD": INDEX_SIZE_FIELD,
    "TRAILER": TRAILER,
}


def derive_struct(declaration: cs.Struct) -> struct.Struct:
    """Build the equivalent `struct.Struct` of a flat construct Struct of fixed-size fields."""
    fmt = ">"
    for field in declaration.subcons:
        sub = field.subcon
        if isinstance(sub, cs.FormatField):
            if not sub.fmtstr.startswith(">"):
                raise TypeError(f"{field.name}: only big-endian fields are supported")
            fmt += sub.fmtstr[1:]
        elif isinstance(sub, cs.Bytes) and isinstance(sub.length, int):
            fmt += f"{sub.length}s"
        else:
            raise TypeError(f"{field.name}: {type(sub).__name__} has no fixed struct form")
    return struct.Struct(fmt)


LAYOUT_PATH = Path(__file__).with_name("layout.py")


def render_layout() -> str:
    """The text of `layout.py`: each fixed declaration's struct format and field names."""
    lines = [
        '"""Struct formats derived from `ltxkit/format/declaration.py`. Generated: do not edit.',
        "",
        "Written by `make layout` (python -m ltxkit.format.declaration); tests/test_schema.py fails",
        'while it differs from what the declarations give."""',
        "",
    ]
    for name, declaration in FIXED.items():
        lines.append(f'{name}_FORMAT = "{derive_struct(declaration).format}"')
        fields = [f'"{f.name}",' for f in declaration.subcons]
        if len(fields) == 1:
            lines.append(f"{name}_FIELDS = ({fields[0]})")
        else:
            lines += [f"{name}_FIELDS = (", *(f"    {f}" for f in fields), ")"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    LAYOUT_PATH.write_text(render_layout())
    print(f"wrote {LAYOUT_PATH}", file=sys.stderr)
