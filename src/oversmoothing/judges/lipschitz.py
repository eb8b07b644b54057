"""Judges of chapter 07: C10a, C10b (Lipschitz normalisation lets deep residual GNNs train)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import NOT_JUDGED, NOT_REPRODUCED, PARTLY, REPRODUCED, Verdict, from_parts, reading, seeds_agree

__all__ = []
