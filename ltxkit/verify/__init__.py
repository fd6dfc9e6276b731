"""`ltxkit verify`: name every defect in LTX files and replicas, without writing anything."""

from ltxkit.verify.engine import verify_paths
from ltxkit.verify.findings import Finding, Report, Severity

__all__ = ["Finding", "Report", "Severity", "verify_paths"]
