"""`make demo`: the whole story on a built-in example, with the real Litestream.

1. Litestream replicates a sample database; it is killed (-9), writes and a checkpoint happen
   while it is down, it is restarted — the recipe of Litestream issue #752.
2. The replica gets the damage #752 left behind: a snapshot with a hole.
3. `ltxkit verify` names it; `litestream restore` fails the way the seed report shows.
4. `ltxkit repair --rebuild-snapshot --from-db` mends it, moving the damaged file aside.
5. `ltxkit verify` passes; both `litestream restore` and `ltxkit restore` bring every row back.
6. Structure is not truth: a replica whose every file is well-formed, but whose latest restore is a
   corrupt database. `litestream restore` "succeeds"; `ltxkit verify` restores it, lets SQLite
   judge, and names the last good and the first bad TXID; `repair` mends it.
7. `ltxkit replicate` under the same #752 recipe (kill -9, writes and a TRUNCATE checkpoint while
   it is down, restart): every file it published was proven first; the replica verifies and both
   tools restore every row.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

import harness as H

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "demo-work"
console = Console(highlight=False)


def step(title: str) -> None:
    console.print()
    console.print(Rule(f"[bold cyan]{title}[/bold cyan]", align="left"))


def pasteable(cmd: list[str]) -> str:
    """The command as a user can paste it: `ltxkit` for this interpreter's `-m ltxkit` (on PATH
    once `.venv/bin` is, see README: Getting started), absolute paths and file:// URLs, quoted."""
    if cmd[:3] == [sys.executable, "-m", "ltxkit"]:
        cmd = ["ltxkit", *cmd[3:]]
    return shlex.join(cmd)


def sh(*args: object, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
    cmd = [str(a) for a in args]
    console.print(f"[dim]$[/dim] [bold]{escape(pasteable(cmd))}[/bold]", soft_wrap=True)  # one pasteable line
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    for stream in (r.stdout, r.stderr):
        if stream.strip():
            console.print(stream.rstrip(), markup=False, soft_wrap=True)
    console.print(f"[dim](exit {r.returncode})[/dim]")
    if expect is not None and r.returncode != expect:
        console.print(f"[red]demo: expected exit {expect}[/red]")
        sys.exit(1)
    return r


def main() -> None:
    ltxkit = [sys.executable, "-m", "ltxkit"]
    litestream = H.litestream_bin()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    console.print(
        f"Every command below can be pasted into a shell once ltxkit is on PATH: "
        f"[bold]export PATH={escape(shlex.quote(str(Path(sys.executable).parent)))}:$PATH[/bold]",
        soft_wrap=True,
    )

    step("1. Litestream replicates a sample database; the #752 recipe runs against it")
    rep = H.make_seed_shape(WORK)
    db, replica = rep.db_path, rep.replica_dir
    console.print(f"database {db}: {H.row_count(db)} rows; replica {replica} (file://{replica})", markup=False)
    console.print("real Litestream was killed with SIGKILL, rows were written and the WAL was checkpointed while "
                  "it was down, then it was restarted.")
    console.print(f"[yellow]damage[/yellow]: {rep.detail}")
    if not rep.natural:
        console.print("[dim](Litestream 0.5.17 itself survives the recipe, so the demo reproduces the hole that "
                      "0.5.0 left in its snapshot, as the seed report describes.)[/dim]")

    step("2. ltxkit verify names the damage before anyone needs the backup")
    sh(*ltxkit, "verify", replica, expect=1)

    step("3. litestream restore fails, as in the seed report")
    sh(litestream, "restore", "-o", WORK / "litestream-before.db", f"file://{replica}", expect=1)

    step("4. ltxkit repair builds a new verified snapshot and moves the damaged file aside")
    sh(*ltxkit, "repair", replica, "--rebuild-snapshot", "--from-db", db, "--dry-run")
    sh(*ltxkit, "repair", replica, "--rebuild-snapshot", "--from-db", db, "--yes")

    step("5. verify passes; both restores bring every row back")
    sh(*ltxkit, "verify", replica, "--deep")
    theirs, ours = WORK / "litestream-after.db", WORK / "ltxkit-after.db"
    sh(litestream, "restore", "-o", theirs, f"file://{replica}")
    sh(*ltxkit, "restore", replica, "-o", ours, "--integrity-check", "full")
    source = H.logical_dump(db)
    ok = H.logical_dump(theirs) == source and H.logical_dump(ours) == source
    same = theirs.read_bytes() == ours.read_bytes()
    console.print(f"rows in source {len(source)}, litestream restore {len(H.logical_dump(theirs))}, "
                  f"ltxkit restore {len(H.logical_dump(ours))}; integrity_check: {H.integrity_check(theirs)}; "
                  f"the two restores are byte-identical: {same}")
    if not (ok and same):
        console.print("[red]demo failed: restored rows differ[/red]")
        sys.exit(1)
    quarantine = sorted((replica / "quarantine").glob("*/manifest.json"))
    if quarantine:
        console.print(f"the damaged file is kept in {quarantine[0].parent}/ (see manifest.json)", markup=False)
    stale_page_story(ltxkit, litestream)
    replicate_story(ltxkit, litestream)
    console.print("\n[bold green]demo complete[/bold green]: damage found before restore time, mended, restored; "
                  "a replica made by ltxkit survives the recipe that broke one.")


def stale_page_story(ltxkit: list[str], litestream: str) -> None:
    step("6. Structure is not truth: every file well-formed, the latest restore corrupt")
    rep = H.make_stale_page_shape(WORK / "stale")
    db, replica = rep.db_path, rep.replica_dir
    console.print(f"[yellow]damage[/yellow]: {rep.detail}")
    bad = WORK / "stale-litestream.db"
    sh(litestream, "restore", "-o", bad, f"file://{replica}")
    console.print(f"litestream restore exits 0, but SQLite's quick_check of what it wrote says: "
                  f"{H.quick_check(bad).splitlines()[-1]}")
    sh(*ltxkit, "verify", replica, "--structure-only")
    sh(*ltxkit, "verify", replica, expect=1)

    step("7. repair acts on it: a new snapshot from the database, the bad files moved aside")
    sh(*ltxkit, "repair", replica, "--rebuild-snapshot", "--from-db", db, "--yes")
    sh(*ltxkit, "verify", replica)
    mended = WORK / "stale-mended.db"
    sh(litestream, "restore", "-o", mended, f"file://{replica}")
    if H.logical_dump(mended) != H.logical_dump(db) or H.quick_check(mended) != "ok":
        console.print("[red]demo failed: the mended replica does not restore the source's rows[/red]")
        sys.exit(1)
    console.print(f"litestream restore now gives the source's {H.row_count(db)} rows; quick_check: ok")


def replicate_story(ltxkit: list[str], litestream: str) -> None:
    step("8. ltxkit replicate under the #752 recipe: kill -9, writes and a checkpoint while down, restart")
    work = WORK / "replicate"
    work.mkdir()
    db = H.make_db(work / "app.db", rows=40)
    replica = work / "replica"
    writer = H.Writer(db)
    rep = H.LtxkitReplicator(db, replica, interval="200ms")
    shown = pasteable(rep.command())
    console.print(f"[dim]$[/dim] [bold]{escape(shown)} &[/bold]  [dim]# in the background[/dim]", soft_wrap=True)
    try:
        rep.start()
        writer.run_for(1.5)
        rep.kill9()
        console.print("replicator killed with SIGKILL; the application keeps writing, then checkpoints (TRUNCATE)")
        writer.run_for(0.5)
        writer.checkpoint("TRUNCATE")
        writer.run_for(0.5)
        rep.start()
        writer.run_for(1.0)
        rep.stop()
    finally:
        if rep.alive:
            rep.kill9()
        writer.close()
    events = rep.events()
    for e in events:
        if e["event"] != "published" or e["kind"] != "increment":
            console.print(f"  [dim]{e['event']:<10}[/dim] {escape(e['message'])}")
    increments = sum(1 for e in events if e.get("kind") == "increment")
    console.print(f"  [dim]... and {increments} increments, each proven before it was published[/dim]")
    sh(*ltxkit, "verify", replica)
    theirs = work / "litestream.db"
    sh(litestream, "restore", "-o", theirs, f"file://{replica}")
    if H.logical_dump(theirs) != H.logical_dump(db) or H.integrity_check(theirs) != "ok":
        console.print("[red]demo failed: litestream restore of ltxkit's replica differs from the source[/red]")
        sys.exit(1)
    console.print(f"litestream restore of ltxkit's replica gives the source's {H.row_count(db)} rows; "
                  "integrity_check: ok")


if __name__ == "__main__":
    main()
