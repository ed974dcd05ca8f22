"""Operations: health checks of a deployment (``facetrace doctor``; usable by a readiness endpoint too)."""

from facetrace.ops.doctor import CheckResult, DoctorOptions, DoctorReport, run_doctor

__all__ = ["CheckResult", "DoctorOptions", "DoctorReport", "run_doctor"]
