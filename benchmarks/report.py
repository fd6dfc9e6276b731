"""Result rows, the printed table and results.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    """One measurement. `higher_is_better` says how to read value, speedup and goal."""

    group: str
    name: str
    unit: str  # "MB/s", "s", "MB"
    ltxkit: float | None
    litestream: float | None = None
    higher_is_better: bool = True
    goal: float | None = None
    goal_on: str = "value"  # "value": ltxkit's number vs goal; "speedup": ltxkit's speedup over litestream vs goal
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def speedup(self) -> float | None:
        """How many times faster (or leaner) ltxkit is than Litestream; > 1 is better for ltxkit."""
        if self.ltxkit is None or self.litestream is None or self.ltxkit <= 0 or self.litestream <= 0:
            return None
        return self.ltxkit / self.litestream if self.higher_is_better else self.litestream / self.ltxkit

    @property
    def of_goal(self) -> float | None:
        """Fraction of the goal reached (>= 1: met)."""
        if self.goal is None:
            return None
        if self.goal_on == "speedup":
            return None if self.speedup is None else self.speedup / self.goal
        if self.ltxkit is None or self.ltxkit <= 0:
            return None
        return self.ltxkit / self.goal if self.higher_is_better else self.goal / self.ltxkit

    @property
    def met(self) -> bool | None:
        g = self.of_goal
        return None if g is None else g >= 1.0

    def goal_text(self) -> str:
        if self.goal is None:
            return ""
        if self.goal_on == "speedup":
            return f"≥ {self.goal:g}× faster"
        sign = "≥" if self.higher_is_better else "≤"
        return f"{sign} {_fmt(self.goal, self.unit)}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(speedup=self.speedup, of_goal=self.of_goal, met=self.met, goal_text=self.goal_text())
        return d


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "s":
        return f"{v:.3f} s" if v < 10 else f"{v:.1f} s"
    if unit == "MB/s":
        return f"{v:,.0f} MB/s" if v >= 100 else f"{v:.1f} MB/s"
    if unit == "MB":
        return f"{v:,.0f} MB" if v >= 100 else f"{v:.1f} MB"
    return f"{v:g} {unit}"


def render(rows: list[Row]) -> str:
    headers = ["benchmark", "ltxkit", "litestream", "ltxkit speedup", "goal", "of goal", "met?"]
    body: list[list[str]] = []
    groups: list[int] = []
    last_group = None
    for r in rows:
        if r.group != last_group:
            groups.append(len(body))
            last_group = r.group
        sp = r.speedup
        og = r.of_goal
        body.append(
            [
                r.name,
                _fmt(r.ltxkit, r.unit),
                _fmt(r.litestream, r.unit) if r.litestream is not None else "",
                f"{sp:.2f}×" if sp is not None else "",
                r.goal_text(),
                f"{og:.2f}" if og is not None else "",
                {True: "yes", False: "NO", None: ""}[r.met],
            ]
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(headers)]
    right = {1, 2, 3, 5}

    def line(cells: list[str]) -> str:
        cols = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in cols).rstrip()

    sep = "  ".join("-" * w for w in widths)
    out = [line(headers), sep]
    for i, b in enumerate(body):
        if i in groups and i:
            out.append("")
        out.append(line(b))
    notes = [f"  [{r.name}] {r.note}" for r in rows if r.note]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)
