"""Markdown tables for reports (no extra dependency)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def markdown_table(df: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    """A GitHub Markdown table (no extra dependency).

    Floats use ``formats[col]`` or 4 significant digits."""
    formats = formats or {}
    cols = list(df.columns)

    def cell(col: str, v: Any) -> str:
        if isinstance(v, float):
            if math.isnan(v):
                return "n/a"
            return formats.get(col, "{:,.4g}").format(v)
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(cell(c, r[c]) for c in cols) + " |")
    return "\n".join(lines)
