"""Errors the analysis functions raise instead of returning a number the data cannot support."""

from __future__ import annotations


class InsufficientDataError(ValueError):
    """The input has too few usable rows (or too little variation) for the requested figure.

    Raised rather than returning a silent NaN or a number fitted on a handful of rows; the message
    says what was needed and what was found, so a Dagster check can surface it as is. It subclasses
    ValueError so callers that already treat bad input as ValueError keep working.

    `rule` names the kind of refusal where a caller acts on it (key drivers records it per excluded
    item, so a report can say why in any language): ``too_few_rows``, ``constant`` or ``collinear``;
    None where only the message matters.
    """

    def __init__(self, message: str, *, rule: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule
