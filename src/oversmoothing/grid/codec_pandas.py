"""The pandas part of :mod:`oversmoothing.grid.codec`: DataFrame, Series and Index, column by column.

Numeric, bool and datetime columns (and index values) go to one flat array per dtype for the whole result;
object columns element by element through the codec; string (``str``), categorical and nullable
(``Int64``, ``Float64``, ``boolean``) columns with their dtype's parameters.  Decoding rebuilds every
column with its exact dtype (pandas never infers one), the index and the column labels.
"""
from __future__ import annotations

__all__ = ["encode", "decode"]

_MASKED = {"IntegerArray", "FloatingArray", "BooleanArray"}


def encode(enc, obj, where: str):
    """The node of a DataFrame, Series or Index ``obj``, or None when ``obj`` is none of them."""
    import pandas as pd

    if type(obj) is pd.DataFrame:
        cols = [_values(enc, s, f"{where}[{name!r}]") for name, s in obj.items()]
        node = {"t": "frame", "columns": _index(enc, obj.columns, f"{where}.columns"),
                "index": _index(enc, obj.index, f"{where}.index"), "cols": cols}
    elif type(obj) is pd.Series:
        node = {"t": "series", "values": _values(enc, obj, where), "index": _index(enc, obj.index, f"{where}.index"),
                "name": enc(obj.name, f"{where}.name")}
    elif isinstance(obj, pd.Index):
        return _index(enc, obj, where)
    elif obj is pd.NA:
        return {"t": "NA"}
    else:
        return None
    if obj.attrs:
        node["attrs"] = enc(dict(obj.attrs), f"{where}.attrs")
    return node


def _values(enc, s, where):
    """The node of a Series' (or an Index's) values: 1-D numpy values as a slice of the result's flat array
    of their dtype (``enc.pool``), object values item by item, extension arrays with their dtype."""
    import numpy as np
    import pandas as pd

    dtype = s.dtype
    if isinstance(dtype, np.dtype):
        arr = s.to_numpy(copy=False)
        if dtype.hasobject:
            return {"t": "obj", "items": [enc(v, f"{where}[{i}]") for i, v in enumerate(arr.tolist())]}
        if arr.ndim != 1:
            return {"t": "nd", "ref": enc.array(arr)}
        ref, at = enc.pool(arr)
        return {"t": "col", "ref": ref, "at": at, "n": len(arr)}
    if isinstance(dtype, pd.StringDtype):
        na = "NA" if dtype.na_value is pd.NA else "nan"
        items = [v if isinstance(v, str) else None for v in s.array]
        return {"t": "str", "storage": dtype.storage, "na": na, "items": items}
    if isinstance(dtype, pd.CategoricalDtype):
        cat = s.array
        return {"t": "cat", "categories": _index(enc, cat.categories, f"{where}.categories"),
                "ordered": bool(cat.ordered), "codes": enc.array(np.asarray(cat.codes))}
    arr = s.array
    if type(arr).__name__ in _MASKED:
        return {"t": "masked", "kind": type(arr).__name__, "dtype": str(dtype),
                "data": enc.array(arr._data), "mask": enc.array(arr._mask)}
    raise TypeError(f"{where} has pandas dtype {dtype}, which cannot be cached; accepted: numpy dtypes, object, "
                    "str/string, category, Int*/UInt*/Float*/boolean (convert others, e.g. with .astype)")


def _index(enc, idx, where):
    import pandas as pd

    name = enc(idx.name, f"{where}.name") if not isinstance(idx, pd.MultiIndex) else None
    if type(idx) is pd.RangeIndex:
        return {"t": "range", "start": idx.start, "stop": idx.stop, "step": idx.step, "name": name}
    if isinstance(idx, pd.MultiIndex):
        return {"t": "multi", "levels": [_index(enc, lv, f"{where}.levels[{i}]") for i, lv in enumerate(idx.levels)],
                "codes": [enc.array(c) for c in idx.codes], "names": [enc(n, f"{where}.names") for n in idx.names]}
    return {"t": "index", "values": _values(enc, idx, where), "name": name}


def decode(dec, node):
    """The pandas object (or pd.NA) of ``node``; ValueError for an unknown node."""
    import pandas as pd

    tag = node.get("t")
    if tag == "frame":
        index = _unindex(dec, node["index"])
        columns = _unindex(dec, node["columns"])
        cols = [_unvalues(dec, c) for c in node["cols"]]
        if len(cols) != len(columns) or any(len(c) != len(index) for c in cols):
            raise ValueError("frame columns do not match its labels or index")
        obj = _frame(cols, columns, index)
    elif tag == "series":
        values, index = _unvalues(dec, node["values"]), _unindex(dec, node["index"])
        obj = pd.Series(values, index=index, dtype=values.dtype, name=dec(node["name"]), copy=False)
    elif tag in ("range", "multi", "index"):
        return _unindex(dec, node)
    elif tag == "NA":
        return pd.NA
    else:
        raise ValueError(f"unknown node type {tag!r}")
    if "attrs" in node:
        obj.attrs = dec(node["attrs"])
    return obj


def _frame(cols, columns, index):
    """The DataFrame of these columns (1-D arrays of the index's length, each keeping its dtype exactly)."""
    import numpy as np
    import pandas as pd

    if all(not isinstance(c, np.ndarray) or c.dtype.kind in "biufcO" for c in cols):
        try:  # pandas' constructor from already sanitised arrays (as unpickling does): no copy, no inference
            return pd.DataFrame._from_arrays(cols, columns=columns, index=index, verify_integrity=False)
        except (AttributeError, TypeError):  # (another pandas)
            pass
    df = pd.DataFrame({i: pd.Series(c, index=index, dtype=object, copy=False)  # object columns stay object
                       if isinstance(c, np.ndarray) and c.dtype.hasobject else c
                       for i, c in enumerate(cols)}, index=index, copy=False)
    df.columns = columns
    return df


def _unvalues(dec, node):
    import numpy as np
    import pandas as pd

    tag = node.get("t")
    if tag == "nd":
        return dec.array(node["ref"])
    if tag == "col":
        pool, at, n = dec.array(node["ref"]), node["at"], node["n"]
        if type(at) is not int or type(n) is not int or pool.ndim != 1 or not 0 <= at <= at + n <= len(pool):
            raise ValueError(f"column [{at!r}:+{n!r}] outside its array")
        return pool[at:at + n]
    if tag == "obj":
        items = node["items"]
        out = np.empty(len(items), dtype=object)
        for i, v in enumerate(items):
            out[i] = dec(v)
        return out
    if tag == "str":
        dtype = pd.StringDtype(storage=node["storage"], na_value=pd.NA if node["na"] == "NA" else np.nan)
        return pd.array(node["items"], dtype=dtype)
    if tag == "cat":
        return pd.Categorical.from_codes(dec.array(node["codes"]), categories=_unindex(dec, node["categories"]),
                                         ordered=bool(node["ordered"]))
    if tag == "masked" and node.get("kind") in _MASKED:
        arr = getattr(pd.arrays, node["kind"])(dec.array(node["data"]), dec.array(node["mask"]))
        if str(arr.dtype) != node["dtype"]:
            raise ValueError(f"masked column of dtype {node['dtype']} stored as {arr.dtype}")
        return arr
    raise ValueError(f"unknown column node {tag!r}")


def _unindex(dec, node):
    import pandas as pd

    tag = node.get("t")
    if tag == "range":
        return pd.RangeIndex(node["start"], node["stop"], node["step"], name=dec(node["name"]))
    if tag == "multi":
        return pd.MultiIndex(levels=[_unindex(dec, lv) for lv in node["levels"]],
                             codes=[dec.array(c) for c in node["codes"]], names=[dec(n) for n in node["names"]],
                             verify_integrity=True)
    if tag == "index":
        values = _unvalues(dec, node["values"])
        return pd.Index(values, dtype=values.dtype, name=dec(node["name"]), copy=False)
    raise ValueError(f"unknown index node {tag!r}")
