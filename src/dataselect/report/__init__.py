"""Reports of a selection: facts gathered from the stage folders, plots, one HTML page."""

from dataselect.report.page import make_report

__all__ = ["make_report"]
