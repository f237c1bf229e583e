"""Benchmark harness: suites (tasks x methods x seeds), the paper's protocol, result JSONs and reports."""

from .report import build_report, write_report
from .runner import build_plan, run_suite
from .suite import Suite, load_suite, shipped_suites

__all__ = ["Suite", "build_plan", "build_report", "load_suite", "run_suite", "shipped_suites", "write_report"]
