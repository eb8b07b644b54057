"""A run's result as data: a JSON tree plus numpy arrays, and back, without executing anything.

:func:`encode` turns a result into ``(tree, arrays)``: ``tree`` is JSON (``json.dumps`` with NaN/inf),
``arrays`` maps names to numpy arrays of non-object dtypes (stored with ``np.savez``, read back with
``allow_pickle=False``).  :func:`decode` inverts it exactly (values, dtypes, order, names, index).

Accepted: None, bool, int, float (NaN/inf), str, bytes; numpy scalars and arrays (non-object dtypes); torch
tensors (dense; back on their device when this process has it, else on the CPU); tuples, lists, dicts (key
order kept, any encodable hashable key); pandas DataFrame / Series / Index (numpy, object, string,
categorical and nullable columns, names, index and attrs kept); dataclasses of the ``oversmoothing`` package
(e.g. :class:`oversmoothing.training.History`).  Anything else raises ``TypeError`` naming where it is.
Decoding never imports a module outside the ``oversmoothing`` package and only instantiates dataclasses
defined in it; a tree it does not understand raises ``ValueError``.
"""
from __future__ import annotations

import base64
import dataclasses
import importlib
import sys

__all__ = ["encode", "decode", "PACKAGE_NAME"]

PACKAGE_NAME = "oversmoothing"
_PLAIN = (type(None), bool, int, float, str)


def _ours(module: str) -> bool:
    return module == PACKAGE_NAME or module.startswith(PACKAGE_NAME + ".")


class _Encoder:
    def __init__(self):
        self.arrays: dict = {}
        self.pools: dict = {}  # dtype -> (ref, 1-D arrays, length so far): one flat array per dtype
        self._open: set = set()

    def array(self, arr) -> str:
        ref = f"a{len(self.arrays)}"
        self.arrays[ref] = arr
        return ref

    def pool(self, arr) -> tuple[str, int]:
        """(ref, offset) of the 1-D ``arr`` appended to the flat array of its dtype."""
        ref, parts, n = self.pools.get(arr.dtype.str) or (self.array(None), [], 0)
        parts.append(arr)
        self.pools[arr.dtype.str] = (ref, parts, n + len(arr))
        return ref, n

    def finish(self) -> dict:
        import numpy as np

        for ref, parts, _ in self.pools.values():
            self.arrays[ref] = np.concatenate(parts)
        return self.arrays

    def __call__(self, obj, where: str):
        if type(obj) in _PLAIN:
            return obj
        if id(obj) in self._open:
            raise TypeError(f"{where} contains itself; a cached result must be a tree")
        self._open.add(id(obj))
        try:
            return self._node(obj, where)
        finally:
            self._open.discard(id(obj))

    def _node(self, obj, where):
        import numpy as np

        if isinstance(obj, np.generic):
            return self._scalar(obj, where)
        if type(obj) is list:
            return [self(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if type(obj) is tuple:
            return {"t": "tuple", "items": [self(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if type(obj) is dict:
            if all(type(k) is str for k in obj):
                return {"t": "map", "d": {k: self(v, f"{where}[{k!r}]") for k, v in obj.items()}}
            return {"t": "dict", "k": [self(k, f"{where} key {k!r}") for k in obj],
                    "v": [self(v, f"{where}[{k!r}]") for k, v in obj.items()]}
        if type(obj) is bytes:
            return {"t": "bytes", "b64": base64.b64encode(obj).decode()}
        if isinstance(obj, np.ndarray) and type(obj) is np.ndarray:
            self._plain_dtype(obj.dtype, where)
            return {"t": "nd", "ref": self.array(obj)}
        if "torch" in sys.modules and isinstance(obj, sys.modules["torch"].Tensor):
            return self._tensor(obj, where)
        if "pandas" in sys.modules:
            from . import codec_pandas
            node = codec_pandas.encode(self, obj, where)
            if node is not None:
                return node
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return self._dataclass(obj, where)
        raise TypeError(f"{where} = {_short(obj)} of type {type(obj).__module__}.{type(obj).__qualname__} cannot "
                        "be cached as data; a result may hold None, bool, int, float, str, bytes, numpy arrays and "
                        "scalars, torch tensors, tuples, lists, dicts, pandas DataFrames/Series and dataclasses of "
                        "the oversmoothing package")

    @staticmethod
    def _plain_dtype(dtype, where):
        if dtype.hasobject:
            raise TypeError(f"{where} is a numpy array of dtype {dtype} (holds Python objects); a cached array must "
                            "have a numeric, bool, string or datetime dtype (or convert it to a list)")

    def _scalar(self, obj, where):
        import numpy as np

        self._plain_dtype(obj.dtype, where)
        if obj.dtype.kind in "biuf" and obj.dtype.itemsize <= 8:
            return {"t": "np", "dtype": obj.dtype.str, "v": obj.item()}
        return {"t": "np0", "ref": self.array(np.asarray(obj))}

    def _tensor(self, t, where):
        import torch

        if t.layout != torch.strided or t.is_quantized:
            raise TypeError(f"{where} is a {t.layout} tensor; only dense tensors can be cached")
        cpu = t.detach().cpu().contiguous()
        name = str(t.dtype).removeprefix("torch.")
        if t.dtype == torch.bfloat16:
            cpu = cpu.view(torch.int16)
        try:
            arr = cpu.numpy()
        except TypeError as exc:
            raise TypeError(f"{where} is a tensor of dtype {name}, which has no numpy twin ({exc})") from None
        return {"t": "tensor", "dtype": name, "ref": self.array(arr), "device": str(t.device),
                "grad": bool(t.requires_grad)}

    def _dataclass(self, obj, where):
        cls = type(obj)
        path = f"{cls.__module__}:{cls.__qualname__}"
        if not _ours(cls.__module__) or "<" in cls.__qualname__ or _find_class(path, import_=False) is not cls:
            raise TypeError(f"{where} is a {path} dataclass; only dataclasses defined at the top of a module of the "
                            f"{PACKAGE_NAME} package can be cached (decoding instantiates nothing else)")
        return {"t": "dataclass", "cls": path,
                "fields": [[f.name, self(getattr(obj, f.name), f"{where}.{f.name}")] for f in dataclasses.fields(obj)]}


def _short(obj) -> str:
    text = repr(obj)
    return text if len(text) <= 60 else text[:57] + "..."


def encode(result, where: str = "result") -> tuple[object, dict]:
    """``(tree, arrays)`` of ``result`` (see the module docstring); TypeError names what cannot be stored."""
    enc = _Encoder()
    tree = enc(result, where)
    return tree, enc.finish()


def _find_class(path: str, import_: bool = True):
    """The class at ``module:qualname`` when both are this package's (a module already imported, or one of
    the library's, never the runner's ``book``/``__main__``); None otherwise."""
    module, _, qualname = path.partition(":")
    parts = module.split(".")
    if not _ours(module) or not qualname or not all(p.isidentifier() for p in parts + qualname.split(".")):
        return None
    mod = sys.modules.get(module)
    if mod is None and import_ and (len(parts) == 1 or parts[1] not in ("book", "__main__")):
        mod = importlib.import_module(module)
    obj = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, type) and _ours(obj.__module__) else None


class _Decoder:
    def __init__(self, arrays):
        self.arrays = arrays

    def array(self, ref):
        if not isinstance(ref, str) or ref not in self.arrays:
            raise ValueError(f"array {ref!r} is not in the payload")
        return self.arrays[ref]

    def __call__(self, node):
        if node is None or type(node) in (bool, int, float, str):
            return node
        if type(node) is list:
            return [self(v) for v in node]
        if type(node) is not dict:
            raise ValueError(f"unexpected {type(node).__name__} in the tree")
        tag = node.get("t")
        if tag == "tuple":
            return tuple(self(v) for v in node["items"])
        if tag == "map":
            return {k: self(v) for k, v in node["d"].items()}
        if tag == "dict":
            keys, values = node["k"], node["v"]
            if len(keys) != len(values):
                raise ValueError("dict with unequal keys and values")
            return {self(k): self(v) for k, v in zip(keys, values)}
        if tag == "bytes":
            return base64.b64decode(node["b64"], validate=True)
        if tag == "np":
            import numpy as np
            return np.dtype(node["dtype"]).type(node["v"])
        if tag == "np0":
            return self.array(node["ref"])[()]
        if tag == "nd":
            return self.array(node["ref"])
        if tag == "tensor":
            return self._tensor(node)
        if tag == "dataclass":
            return self._dataclass(node)
        from . import codec_pandas
        return codec_pandas.decode(self, node)

    def _tensor(self, node):
        import torch

        arr = self.array(node["ref"])
        t = torch.from_numpy(arr.copy())
        if node["dtype"] == "bfloat16":
            t = t.view(torch.bfloat16)
        if str(t.dtype).removeprefix("torch.") != node["dtype"]:
            raise ValueError(f"tensor of dtype {node['dtype']} stored as {arr.dtype}")
        dev = node.get("device", "cpu")
        if dev.startswith("cuda") and torch.cuda.is_available():
            t = t.to(dev)
        return t.requires_grad_(True) if node.get("grad") else t

    def _dataclass(self, node):
        cls = _find_class(node["cls"]) if isinstance(node.get("cls"), str) else None
        if cls is None or not dataclasses.is_dataclass(cls):
            raise ValueError(f"class {node.get('cls')!r} is not a dataclass of the {PACKAGE_NAME} package")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        init, later = {}, {}
        for name, value in node["fields"]:
            if name not in fields:
                raise ValueError(f"{node['cls']} has no field {name!r}")
            (init if fields[name].init else later)[name] = self(value)
        obj = cls(**init)
        for name, value in later.items():
            object.__setattr__(obj, name, value)
        return obj


def decode(tree, arrays) -> object:
    """The result encoded as ``(tree, arrays)``; ValueError (or KeyError/TypeError) for a tree it does not
    understand.  ``arrays`` maps names to arrays (e.g. an ``np.load(..., allow_pickle=False)`` archive)."""
    return _Decoder(arrays)(tree)
