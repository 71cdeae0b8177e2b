"""The leadership report: a self-contained HTML page with the contacts -> NPS -> repeat-rate chain.

Pure Python (jinja2, pandas): the Dagster report asset reads the warehouse tables into frames,
builds `ReportInputs`, calls `render_report`, then `write_report`; it reports `headline_numbers`
as metadata, the same numbers the headline sentence prints.
"""

from analysis.report.inputs import ANALYSIS_TABLES, ReportInputs
from analysis.report.output import ReportPaths, write_report
from analysis.report.render import render_report
from analysis.report.sections import headline_numbers

__all__ = ["ANALYSIS_TABLES", "ReportInputs", "ReportPaths", "headline_numbers", "render_report", "write_report"]
