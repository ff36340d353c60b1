"""Text that fits a terminal: tables and lines of at most ``WIDTH`` columns.

A technique table has fifteen columns; at full names and six digits it is about 160 columns
wide and wraps into noise in an ordinary terminal. The terminal format therefore shortens the
column names (``SHORT``), prints four significant digits, pads headers no more than their
cells, wraps long option labels (quantile ranges) inside their cell and, if that is still
too wide, leaves out columns in a stated order, saying which. The markdown, HTML, CSV and JSON reports keep them all.
"""

from __future__ import annotations

import math
import numbers
import textwrap
from collections.abc import Mapping, Sequence

import pandas as pd

WIDTH = 100
FLOATFMT = ".4g"
# Displayed column name -> terminal name; the report's column line says what they mean.
SHORT = {
    "count": "runs",
    "completed": "done",
    "test_recon": "recon",
    "test_kl": "kl",
    "test_bpd": "bpd",
    "active_units": "AU",
    "train_seconds": "sec",
}


def width(text: str) -> int:
    """Columns the widest line takes (every character we print is one column wide)."""
    return max((len(line) for line in text.splitlines()), default=0)


def cell(value: object) -> str:
    """A value as printed: ``-`` for missing, four significant digits for a float."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        return f"{float(value):{FLOATFMT}}"
    return str(value)


def wrapped(text: str, limit: int | None) -> list[str]:
    """``text`` as the lines of one cell: wrapped at spaces (else mid-word) at ``limit``, if given."""
    return (textwrap.wrap(text, limit) or [""]) if limit else [text]


def text_grid(table: pd.DataFrame, wrap: Mapping[str, int]) -> str:
    """``table`` as aligned columns two spaces apart under a dashed header line: numbers right,
    text left, the ``wrap`` columns' cells wrapped onto more lines. Not tabulate: it pads every
    header by two columns, which alone makes a fifteen-column table 30 columns wider."""
    columns = [str(c) for c in table.columns]
    rows = [
        [wrapped(text, wrap.get(c)) for c, text in zip(columns, (cell(v) for v in row), strict=True)]
        for row in table.itertuples(index=False)
    ]
    numeric = [
        all(isinstance(v, numbers.Real) or v is None for v in table.iloc[:, i]) and not table.iloc[:, i].isna().all()
        for i in range(len(columns))
    ]
    widths = [max([len(c), *(len(line) for row in rows for line in row[i])]) for i, c in enumerate(columns)]

    def line(parts: list[str]) -> str:
        aligned = [p.rjust(w) if num else p.ljust(w) for p, w, num in zip(parts, widths, numeric, strict=True)]
        return "  ".join(aligned).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    for row in rows:
        for k in range(max(len(lines) for lines in row)):
            out.append(line([lines[k] if k < len(lines) else "" for lines in row]))
    return "\n".join(out)


def fit_table(
    table: pd.DataFrame,
    *,
    wrap: Mapping[str, int] | None = None,
    drop: Sequence[str] = (),
    limit: int = WIDTH,
) -> tuple[str, list[str]]:
    """``table`` no wider than ``limit`` if it can be: cells of the ``wrap`` columns are wrapped
    at their width, then the ``drop`` columns are left out one at a time, in order, until it
    fits. Returns the text and the columns left out."""
    wrap = wrap or {}
    shown, dropped = table, []
    pending = [column for column in drop if column in table.columns]
    while True:
        text = text_grid(shown, wrap)
        if width(text) <= limit or not pending:
            return text, dropped
        dropped.append(pending.pop(0))
        shown = shown.drop(columns=dropped[-1])


def fill(line: str, *, limit: int = WIDTH, indent: str = "  ") -> str:
    """``line`` wrapped at ``limit`` columns, continuation lines indented."""
    return textwrap.fill(line, width=limit, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)
