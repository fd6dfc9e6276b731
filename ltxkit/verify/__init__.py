"""`ltxkit verify`: name every defect in LTX files and replicas, without writing anything."""

from ltxkit.verify.engine import Finding, Report, Severity, verify_paths

__all__ = ["Finding", "Report", "Severity", "verify_paths"]
