"""Render a verify Report as text (rich), JSON or JUnit XML."""

from __future__ import annotations

import json
from collections import defaultdict
from xml.etree import ElementTree as ET

from rich.console import Console
from rich.table import Table

from ltxkit.format.errors import Code
from ltxkit.verify.findings import Finding, ReplicaSummary, Report, Severity


def render_json(report: Report, fail_on: Severity) -> str:
    return json.dumps(report.to_json(fail_on), indent=2) + "\n"


def render_junit(report: Report, fail_on: Severity) -> str:
    """One test case per file and one per replica (its chain/plan checks)."""
    suites = ET.Element("testsuites", name="ltxkit verify")
    failing = {Severity.ERROR} if fail_on == Severity.ERROR else {Severity.ERROR, Severity.WARNING}

    def case(suite: ET.Element, name: str, classname: str, findings: list[Finding]) -> None:
        tc = ET.SubElement(suite, "testcase", name=name, classname=classname)
        bad = [f for f in findings if f.severity in failing]
        if bad:
            el = ET.SubElement(tc, "failure", message=f"{bad[0].code}: {bad[0].message}", type=str(bad[0].code))
            el.text = "\n".join(f"{f.code}: {f.message}" for f in bad)
        soft = [f for f in findings if f not in bad]
        if soft:
            ET.SubElement(tc, "system-out").text = "\n".join(f"{f.severity} {f.code}: {f.message}" for f in soft)

    def close(suite: ET.Element) -> None:
        cases = suite.findall("testcase")
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))

    if report.files:
        suite = ET.SubElement(suites, "testsuite", name="files")
        for fc in report.files:
            case(suite, fc.path, "ltxkit.verify.file", fc.findings)
        close(suite)
    for r in report.replicas:
        suite = ET.SubElement(suites, "testsuite", name=r.path)
        case(suite, "replica", "ltxkit.verify.replica", r.findings)
        replica_case = suite.findall("testcase")[-1]
        out = replica_case.find("system-out")
        if out is None:
            out = ET.SubElement(replica_case, "system-out")
            out.text = ""
        out.text = ((out.text + "\n") if out.text else "") + f"content: {content_line(r)}"
        for fc in r.files:
            case(suite, fc.key or fc.path, "ltxkit.verify.file", fc.findings)
        close(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def latest_line(r: ReplicaSummary) -> str:
    """What is true of the latest restore point: restorable, or which TXID fails to restore."""
    if r.latest_txid is None:
        return "no restore plan reaches the latest TXID"
    if any(f.code == Code.UNRESTORABLE for f in r.findings):
        return f"the latest restore point, TXID {r.latest_txid:016x}, does not restore"
    return f"latest restorable TXID: {r.latest_txid:016x}"


def content_line(r: ReplicaSummary) -> str:
    """What the content check found, or why it did not run, in one line."""
    verdict = r.content
    if verdict is None:
        return f"not checked: {r.content_skipped}"
    latest = verdict.latest
    line = f"{verdict.mode.pragma} of the latest restore point (TXID {latest.txid:016x}): {latest.said}"
    if not latest.ok:
        good = verdict.last_good
        line += f"; last good TXID {good.txid:016x}" if good else "; no restore point passes"
        if verdict.first_bad is not None:
            line += f", first bad TXID {verdict.first_bad.txid:016x} ({verdict.first_bad.last_key})"
        line += f"; {len(verdict.probes)} restore point(s) checked"
    return line


def render_text(report: Report, fail_on: Severity, console: Console) -> None:
    for r in report.replicas:
        data = r.to_json()
        table = Table(title=f"replica {r.path}", title_justify="left")
        for col in ("level", "files", "bytes", "TXIDs"):
            table.add_column(col, justify="right" if col != "TXIDs" else "left")
        for level in sorted(data["levels"], key=int):
            lv = data["levels"][level]
            table.add_row(level, str(lv["files"]), f"{lv['bytes']:,}", f"{lv['min_txid']}..{lv['max_txid']}")
        console.print(table)
        console.print(
            f"  {_count(data['files'], 'file')}, {data['bytes']:,} bytes, {_count(data['snapshots'], 'snapshot')}; "
            f"{latest_line(r)}"
            + (f", {data['commit']} pages of {data['page_size']} bytes" if data["commit"] is not None else "")
        )
        console.print(f"  content: {content_line(r)}", highlight=False)
    if report.files:
        console.print(f"{len(report.files)} file(s) checked")
    findings = report.findings
    unchecked = [r.path for r in report.replicas if r.content is None]
    if not findings:
        tail = f" (content not checked: {', '.join(unchecked)})" if unchecked else ""
        console.print(f"[green]ok[/green]: no defects found{tail}", highlight=False)
        return
    by_sev: dict[Severity, int] = defaultdict(int)
    for f in findings:
        by_sev[f.severity] += 1
        style = "red" if f.severity == Severity.ERROR else "yellow"
        console.print(f"[{style}]{f.severity}[/{style}] [bold]{f.code}[/bold] {f.path}: {f.message}", highlight=False)
    verdict = "FAILED" if report.failed(fail_on) else "passed"
    console.print(f"{verdict}: {by_sev[Severity.ERROR]} error(s), {by_sev[Severity.WARNING]} warning(s)")
