"""Numbers for summary.json: floats rounded to 6 places, NaN and None as null."""

from __future__ import annotations

from typing import Any

import numpy as np


def json_float(x: Any) -> float | None:
    """JSON-friendly float (None for None and NaN)."""
    if x is None:
        return None
    x = float(x)
    return None if np.isnan(x) else round(x, 6)
