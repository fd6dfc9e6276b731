"""`ltxkit repair REPLICA --rebuild-snapshot`: make a broken replica restorable again; deletes nothing."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from ltxkit.cli.common import END_OF_INPUT, Fail, ask, guarded, out, say_when_waiting
from ltxkit.errors import EXIT_DEFECTS, EXIT_INTERRUPTED, EXIT_USAGE


@guarded
def repair(
    replica: Annotated[
        str, typer.Argument(help="Replica: a directory, a file:// or an s3://bucket/path URL.", show_default=False)
    ],
    rebuild_snapshot: Annotated[
        bool, typer.Option("--rebuild-snapshot", help="Build a new verified snapshot so the replica restores again.")
    ] = False,
    from_db: Annotated[
        Path | None, typer.Option("--from-db", help="Build it from this live database (best: loses nothing).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be built and moved; change nothing.")] = (
        False
    ),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before moving files.")] = False,
    force_source: Annotated[
        bool,
        typer.Option(
            "--force-source",
            help="Use --from-db even when its schema or pages do not match the replica's (loudly).",
        ),
    ] = False,
    watch: Annotated[
        float,
        typer.Option(
            "--watch",
            min=0,
            envvar="LTXKIT_REPAIR_WATCH",
            help="Seconds to watch the replica for a running replicator's new files before repairing.",
        ),
    ] = 1.0,
) -> None:
    """Make a broken replica restorable again. Deletes nothing.

    Repair verifies the replica first, content included: a replica whose files are sound but
    whose restores fail SQLite's quick_check is repaired too, and the files from the first bad
    restore point on are moved aside.

    With --from-db, one consistent read of the live database becomes a new snapshot above every
    TXID in the replica. The database must pass integrity_check, have the replica's page size,
    and look like the replica's source: compared with the replica's newest restore point that
    restores, it must have the same application id and every table, and at least half of the
    pages both have must be identical, or its replicator's state beside it (Litestream's local
    copies, ltxkit replicate's saved state) must name this replica (the plan's "source check"
    line shows the counts of identical, changed, added and removed pages, or "identical" when
    the checksums match; --force-source overrides a mismatch, loudly). Without --from-db, the snapshot is rebuilt
    from the newest healthy snapshot and the healthy files after it (up to the last restore
    point that passes the content check), and the TXIDs that can no longer be restored are named.
    Damaged files, and files that would keep verify failing, move to REPLICA/quarantine/<time>/
    with a manifest.json saying why. Every new file is verified before it is published.
    Staging directories left by interrupted runs (whose process is gone) are removed.

    Stop Litestream (and ltxkit replicate) before repairing; start it again afterwards. Repair
    refuses (exit 2) when it sees a replicator: with --from-db, ltxkit replicate's lock on the
    database, or Litestream's .<db>-litestream/ state written during the --watch (1 s); always,
    new or changed files in the replica during that watch. An idle Litestream shows none of
    these, so stopping it is your part. Repair also backs out if the replica changes while it
    works.

    Examples:  ltxkit repair /backups/app --rebuild-snapshot --from-db /srv/app.db
               ltxkit repair s3://bucket/app --rebuild-snapshot --dry-run
    """
    from ltxkit.repair import RepairError, apply_repair, discard, plan_repair
    from ltxkit.replica.storage import open_storage
    from ltxkit.verify.findings import join_label

    if not rebuild_snapshot:
        raise Fail("say what to do: --rebuild-snapshot (the only repair so far)", EXIT_USAGE)
    storage = open_storage(replica)
    if from_db is not None and not from_db.is_file():
        raise Fail(f"{from_db}: no such database file", EXIT_USAGE)
    from ltxkit.live import refuse_if_replicating

    say_when_waiting()

    refuse_if_replicating(storage, from_db, watch_s=watch)
    try:
        plan = plan_repair(storage, from_db=from_db, force_source=force_source)
    except RepairError as exc:
        raise Fail(f"{replica}: {exc}") from None
    stale = storage.stale_staging()
    if not plan.needed and plan.before.errors:
        codes = ", ".join(sorted({str(f.code) for f in plan.before.errors}))
        raise Fail(f"{replica}: verify finds {codes}, which repair --rebuild-snapshot cannot mend; nothing changed")
    if not plan.needed:
        if stale and not dry_run:
            storage.remove_stale_staging()
            out.print(f"{replica}: removed {_staging(stale)} left by interrupted runs", markup=False)
            out.print(f"{replica}: verify finds no errors; nothing else to repair", markup=False)
            return
        if stale:
            out.print(f"{replica}: would remove {_staging(stale)} left by interrupted runs", markup=False)
        out.print(f"{replica}: verify finds no errors; nothing to repair, nothing changed")
        return
    out.print(f"[bold]repair plan for {replica}[/bold]")
    if plan.before.content is not None and not plan.before.content.ok:
        from ltxkit.verify.report import content_line

        out.print(f"  content: {content_line(plan.before)}", markup=False)
    if plan.new_files:
        out.print(f"  new snapshot TXID {plan.txid:016x}, built from {plan.source}")
    else:  # the replica's own files already end at the point it keeps: only moves are needed
        out.print(f"  no new file: the replica's files still restore TXID {plan.txid:016x}", markup=False)
    if plan.comparison:
        style = "bold red" if "NOT the replica's database" in plan.comparison else "dim"
        from rich.markup import escape

        out.print(f"  [{style}]source check[/{style}]: {escape(plan.comparison)}", highlight=False)
    for name in stale:
        out.print(f"  remove   {name} (stale staging: its process is gone)", markup=False)
    for nf in plan.new_files:
        out.print(f"  publish  {nf.key}", markup=False)
    for key, why in sorted(plan.quarantine.items()):
        out.print(f"  move     {key} -> quarantine/ ({', '.join(sorted({str(f.code) for f in why}))})", markup=False)
    if plan.lost:
        out.print(
            f"  [yellow]lost[/yellow]: TXIDs {plan.lost[0]:016x}..{plan.lost[1]:016x} cannot be restored "
            "(use --from-db to keep the latest state)"
        )
    if dry_run:
        discard(plan)
        out.print("dry run: nothing changed")
        return
    if not yes:
        if not sys.stdin.isatty():
            discard(plan)
            raise Fail("not a terminal: pass --yes to apply the repair", EXIT_USAGE)
        answer = ask("apply this repair? [y/N]: ")
        if answer is None or answer.strip().lower() not in ("y", "yes"):
            discard(plan)
            out.print("nothing changed")
            # Ctrl-C: interrupted; Ctrl-D: no answer (1); a "no": could not run, by choice (2)
            raise typer.Exit(
                EXIT_INTERRUPTED if answer is None else EXIT_DEFECTS if answer == END_OF_INPUT else EXIT_USAGE
            )
    if stale:
        storage.remove_stale_staging()
    try:
        result = apply_repair(storage, plan)
    except RepairError as exc:
        put_back = "; everything was put back" if exc.backed_out and not exc.applied else ""
        if put_back and exc.aside:
            put_back += f" (the files it had published are kept aside in {join_label(storage.label, exc.aside)})"
        raise Fail(f"{replica}: {exc}{put_back}", exc.exit_code) from None
    if result.quarantine is not None:
        where = join_label(storage.label, result.quarantine)
        n = len(plan.quarantine)
        out.print(f"moved {n:,} file{'' if n == 1 else 's'} to {where} (see manifest.json there)", markup=False)
    errors = result.errors
    if errors:
        raise Fail(f"{replica}: still failing after repair: {errors[0].code}: {errors[0].message}")
    out.print(f"[green]repaired[/green]: latest restorable TXID {plan.txid:016x}; `ltxkit verify {replica}` passes")
    out.print(f"next: start Litestream again; it continues above {'the new snapshot' if plan.new_files else 'it'}")


def _staging(names: tuple[str, ...]) -> str:
    return f"{len(names):,} stale staging director{'y' if len(names) == 1 else 'ies'} ({', '.join(names)})"
