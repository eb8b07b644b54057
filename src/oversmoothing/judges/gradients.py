"""Judges of chapters 06-07: C8, C9 (gradient oversmoothing and expansion), C11 (gradient similarity as a predictor)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import NOT_JUDGED, NOT_REPRODUCED, PARTLY, REPRODUCED, Verdict, from_parts, reading, seeds_agree

__all__ = []
