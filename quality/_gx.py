"""The one place that imports Great Expectations: analytics off, progress bars off, one ephemeral context.

GX reads `GX_ANALYTICS_ENABLED` when it is imported, so the variable is set here before the import
and every other module of `quality/` imports `gx` from this module instead of importing it directly.
"""

from __future__ import annotations

import os
import threading
from functools import cache

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx
import pandas as pd
import pyarrow as pa
from great_expectations.data_context.types.base import ProgressBarsConfig

__all__ = ["ExpectColumnArrowTypeToBe", "arrow_type_of", "gx", "run_lock", "whole_frame_batch_definition"]

# GX contexts are not thread-safe; Dagster's in-process executor or a notebook may validate from
# several threads, so validations through the shared context take turns.
run_lock = threading.Lock()


@cache
def whole_frame_batch_definition() -> object:
    """The process-wide ephemeral context's batch definition that takes a whole pandas frame per run.

    An ephemeral context keeps everything in memory (nothing written under the repo); building it
    and its pandas data source once per process keeps a validation call at its data cost.
    """
    context = gx.get_context(mode="ephemeral")
    # tqdm bars would spam the Dagster logs with one line per metric.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("nps_link_frames").add_dataframe_asset("frame")
    return asset.add_batch_definition_whole_dataframe("whole_frame")


def arrow_type_of(dtype: object) -> str:
    """The Arrow type name a pandas column dtype stores, e.g. 'int64', 'timestamp[us]', 'decimal128(20, 4)'.

    Arrow-backed columns (`pd.ArrowDtype`) name their type exactly; pandas' string dtypes are Arrow
    'string'; numpy dtypes map through Arrow's own conversion. Object columns (Python objects of
    any type) have no single Arrow type and are reported as 'object'.
    """
    if isinstance(dtype, pd.ArrowDtype):
        return str(dtype.pyarrow_dtype)
    if isinstance(dtype, pd.StringDtype):
        return "string"
    try:
        return str(pa.from_numpy_dtype(dtype))
    except (TypeError, pa.ArrowNotImplementedError):
        return str(dtype)


class ExpectColumnArrowTypeToBe(gx.expectations.ExpectColumnTypeToBe):
    """Expect a pandas column to store the given Arrow type (the lake schema's type), e.g. 'decimal128(20, 4)'.

    GX's own pandas type expectation resolves names through `pandas_dtype`, which cannot name a
    parameterised Arrow type such as decimal128(20, 4), and pandas' default Parquet conversion turns
    a nullable integer into float64 and a nullable boolean into object. The lake contract is written
    in Arrow types, so this compares the column's Arrow type with the contract's, exactly.
    """

    def _validate_pandas(self, actual_column_type: object, expected_type: str) -> dict:
        observed = arrow_type_of(actual_column_type)
        return {"success": observed == expected_type, "result": {"observed_value": observed}}
