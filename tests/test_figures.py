"""The house style's table and figure helpers (figures.show_table, format_number, subplots)."""
from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from oversmoothing import figures
from oversmoothing.figures import PAGE_WIDTH, format_number, show_table, subplots


@pytest.mark.parametrize("value, text", [
    (137.7998, "137.800"), (0.25, "0.250"), (-2.5, "-2.500"), (0.0123, "0.012"), (0.01, "0.010"),
    (0.0012, "0.0012"), (0.00539, "0.00539"), (0.0004, "4.00e-04"), (1.2e-5, "1.20e-05"), (2.5e7, "2.50e+07"), (999999.0, "999999.000"), (0.0, "0"),
    (3, "3"), (np.int64(5), "5"), (np.float32(0.25), "0.250"), (True, "True"), (np.bool_(False), "False"),
    (float("nan"), "–"), (None, "–"), (float("inf"), "∞"), ("chameleon", "chameleon"),
    ([-1.422497, 5.876415], "[-1.422, 5.876]"), (np.array([2, 3]), "[2, 3]"),
])
def test_format_number(value, text):
    assert format_number(value) == text


def test_format_number_digits():
    assert format_number(3.14159, digits=1) == "3.1"
    assert format_number(3.14159, digits=4) == "3.1416"
    assert format_number(0.0088, digits=2) == "0.0088"   # below 10^-1 with two decimals: significant digits
    assert format_number(0.0005, digits=1) == "5e-04"


def _cells(html: str) -> list[str]:
    return [c.strip() for c in re.findall(r"<t[dh](?:\s[^>]*)?>(.*?)</t[dh]>", html, re.S)]


def test_show_table_formats_numbers_and_hides_the_default_index():
    df = pd.DataFrame({"depth": [64, 128], "loss": [1.377998e2, 3.2e-9], "arch": ["res_gcn", "res_gat"],
                       "ok": [True, False], "acc": [0.91234, np.nan]})
    sty = show_table(df)
    assert isinstance(sty, pd.io.formats.style.Styler)
    cells = _cells(sty.to_html())
    assert cells[:5] == ["depth", "loss", "arch", "ok", "acc"]   # no blank index header: the index is hidden
    assert cells[5:] == ["64", "137.800", "res_gcn", "True", "0.912", "128", "3.20e-09", "res_gat", "False", "–"]
    assert "e+02" not in sty.to_html() and "1.377998" not in sty.to_html()


def test_show_table_keeps_a_meaningful_index_and_caption():
    df = pd.DataFrame({"growth": [12.3456, 86.0]}, index=pd.Index([0.5, 4.0], name="c"))
    html = show_table(df, digits=2, index=True, caption="log10 growth").to_html()
    cells = _cells(html)
    assert "0.50" in cells and "4.00" in cells and "12.35" in cells and "86.00" in cells
    assert "<caption>log10 growth</caption>" in html


def test_show_table_per_column_formats_and_multiindex():
    df = pd.DataFrame({"p": [0.5, 0.0001], "n": [10, 20]},
                      index=pd.MultiIndex.from_tuples([("cora", 2), ("cora", 64)], names=["dataset", "depth"]))
    html = show_table(df, index=True, formats={"p": "{:.1e}", "absent": "{:.2f}"}).to_html()
    cells = _cells(html)
    assert "5.0e-01" in cells and "1.0e-04" in cells and "cora" in cells and "64" in cells
    assert show_table(df.reset_index()).data.shape == (2, 4)   # the Styler keeps the data untouched


def test_subplots_never_wider_than_the_page():
    fig, axes = subplots(1, 3, width=3.6, height=3.0)
    try:
        w, h = fig.get_size_inches()
        assert w == pytest.approx(PAGE_WIDTH) and h == pytest.approx(3.0) and len(axes) == 3
    finally:
        plt.close(fig)
    fig, ax = subplots(1, 1, width=5.0, height=3.0)
    try:
        assert tuple(fig.get_size_inches()) == pytest.approx((5.0, 3.0))
    finally:
        plt.close(fig)
    assert PAGE_WIDTH * 110 <= 688       # house dpi: the widest figure fits the 688 px text column unscaled
    assert "show_table" in figures.__all__
