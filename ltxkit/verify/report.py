"""Render a verify Report as text (rich), JSON or JUnit XML."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: a JSON report must not pay for rich or XML at start-up
    from xml.etree import ElementTree as ET

    from rich.console import Console

from ltxkit.format.errors import Code
from ltxkit.verify.findings import Finding, ReplicaSummary, Report, Severity, count


def render_json(report: Report, fail_on: Severity) -> str:
    return json.dumps(_json_clean(report.to_json(fail_on)), indent=2) + "\n"


def _json_clean(value: Any) -> Any:
    """Every string as valid Unicode: a file name that is not UTF-8 reaches us with surrogate
    escapes, which JSON can only carry as unpaired surrogates (`"\\udcff"`) that strict readers
    refuse; its undecodable bytes are shown as `\\xff` instead, so the name still says which file."""
    if isinstance(value, str):
        if not _SURROGATE.search(value):
            return value
        try:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate no file name decodes to
            return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_json_clean(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(v) for v in value]
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def render_junit(report: Report, fail_on: Severity) -> str:
    """One test suite per replica (a case for the replica's own rules, one per file), one for loose
    files, one for paths that could not be checked; the attributes the common JUnit schema names
    (tests, failures, errors, skipped, time, timestamp), with totals on `<testsuites>`.
    `tests/junit.xsd` holds it to that."""
    from xml.etree import ElementTree as ET

    suites = ET.Element("testsuites", name="ltxkit verify")
    failing = {Severity.ERROR} if fail_on == Severity.ERROR else {Severity.ERROR, Severity.WARNING}

    def suite(name: str, seconds: float) -> ET.Element:
        return ET.SubElement(suites, "testsuite", name=_xml_text(name), timestamp=report.started, time=f"{seconds:.3f}")

    def case(parent: ET.Element, name: str, classname: str, findings: list[Finding], out: str = "") -> None:
        tc = ET.SubElement(parent, "testcase", name=_xml_text(name), classname=classname, time="0")
        bad = [f for f in findings if f.severity in failing]
        if bad:
            el = ET.SubElement(
                tc, "failure", message=_xml_text(f"{bad[0].code}: {bad[0].message}"), type=str(bad[0].code)
            )
            el.text = _xml_text("\n".join(f"{f.code} {f.path}: {f.message}" for f in bad))
        lines = [f"{f.severity} {f.code} {f.path}: {f.message}" for f in findings if f not in bad]
        if out:
            lines.append(out)
        if lines:
            ET.SubElement(tc, "system-out").text = _xml_text("\n".join(lines))

    if report.files:
        s = suite("files", 0.0)
        for fc in report.files:
            case(s, fc.path, "ltxkit.verify.file", fc.findings)
    for r in report.replicas:
        s = suite(r.path, r.seconds)
        case(s, "replica", "ltxkit.verify.replica", r.findings, out=f"content: {content_line(r)}\n{r.window_line()}")
        for fc in r.files:
            case(s, fc.key or fc.path, "ltxkit.verify.file", fc.findings)
    if report.unusable:
        s = suite("could not check", 0.0)
        for why in report.unusable:
            tc = ET.SubElement(
                s, "testcase", name=_xml_text(why.split(": ", 1)[0]), classname="ltxkit.verify", time="0"
            )
            ET.SubElement(tc, "error", message=_xml_text(why), type="could-not-run")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for s in suites.findall("testsuite"):
        cases = s.findall("testcase")
        counts = {
            "tests": len(cases),
            "failures": sum(1 for c in cases if c.find("failure") is not None),
            "errors": sum(1 for c in cases if c.find("error") is not None),
            "skipped": 0,
        }
        for key, n in counts.items():
            s.set(key, str(n))
            totals[key] += n
    for key, n in totals.items():
        suites.set(key, str(n))
    suites.set("time", f"{report.seconds:.3f}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """Text XML 1.0 can hold: a file name that is not UTF-8 (surrogate escapes) or carries control
    characters would make the whole report invalid, so such characters become U+FFFD."""
    return _XML_INVALID.sub("\ufffd", text)


_count = count


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
        good, stopped = verdict.last_good, verdict.search_stopped
        if stopped is not None:  # the search lost a file to retention: bounds, not the boundary
            line += f"; a good TXID {good.txid:016x}" if good else ""
            line += f"; search stopped: {stopped.vanished} deleted meanwhile"
        else:
            line += f"; last good TXID {good.txid:016x}" if good else "; no restore point passes"
            if verdict.first_bad is not None:
                line += f", first bad TXID {verdict.first_bad.txid:016x} ({verdict.first_bad.last_key})"
        line += f"; {_count(len(verdict.probes), 'restore point')} checked"
    return line


def render_text(report: Report, fail_on: Severity, console: Console, *, fleet: bool = False) -> None:
    """The human report; `fleet`: one line per replica instead of a table each (verify --recursive)."""
    from rich.table import Table

    console.print(f"mode: {report.mode.describe}", highlight=False, markup=False)
    if fleet:
        for r in report.replicas:
            found = {f.code for f in r.errors}
            if fail_on == Severity.WARNING:
                found |= {f.code for f in r.findings} | {f.code for fc in r.files for f in fc.findings}
            codes = sorted(found)
            verdict = "[red]FAIL[/red]" if codes else "[green]ok[/green]  "
            detail = ", ".join(str(c) for c in codes) if codes else f"{latest_line(r)}; content: {content_line(r)}"
            console.print(f"{verdict} {r.path}: {detail}", highlight=False)
        bad = sum(1 for r in report.replicas if r.errors)
        console.print(f"{_count(len(report.replicas), 'replica')}, {bad:,} with errors", highlight=False)
    for r in report.replicas if not fleet else []:
        data = r.to_json()
        table = Table(title=f"replica {r.path}", title_justify="left")
        for col in ("level", "files", "bytes", "TXIDs"):
            table.add_column(col, justify="right" if col != "TXIDs" else "left")
        for level in sorted(data["levels"], key=int):
            lv = data["levels"][level]
            table.add_row(level, f"{lv['files']:,}", f"{lv['bytes']:,}", f"{lv['min_txid']}..{lv['max_txid']}")
        console.print(table)
        console.print(
            f"  {_count(data['files'], 'file')}, {data['bytes']:,} bytes, {_count(data['snapshots'], 'snapshot')}; "
            f"{latest_line(r)}"
            + (f", {data['commit']:,} pages of {data['page_size']:,} bytes" if data["commit"] is not None else "")
        )
        console.print(f"  content: {content_line(r)}", highlight=False)
        console.print(f"  {r.window_line()}", highlight=False)
        if r.proven:
            console.print(
                f"  ledger: every restore point is proven ({_count(r.proven_points, 'restore point')}, "
                "every file matches its record)"
            )
        elif r.proven_points:
            console.print(f"  ledger: {_count(r.proven_points, 'restore point')} proven, not all (see below)")
    if report.files:
        console.print(f"{_count(len(report.files), 'file')} checked")
    findings = report.findings
    unchecked = [r.path for r in report.replicas if r.content is None]
    if not findings and not report.unusable:
        if len(unchecked) > 1 and len(unchecked) == len(report.replicas):  # a fleet: one line, not every name
            tail = f" (content not checked in any of the {len(unchecked):,} replicas)"
        else:
            tail = f" (content not checked: {', '.join(unchecked)})" if unchecked else ""
        console.print(f"[green]ok[/green]: no defects found{tail}", highlight=False)
        return
    for f in findings:
        style = "red" if f.severity == Severity.ERROR else "yellow"
        console.print(f"[{style}]{f.severity}[/{style}] [bold]{f.code}[/bold] {f.path}: {f.message}", highlight=False)
    console.print(report.summary(fail_on), highlight=False)
