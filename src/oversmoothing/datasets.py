"""Real node-classification datasets through PyG, offline-first.

Rules (DESIGN.md, Data): raw files are copied from a mirror folder in PyG's raw layout
(``$OVERSMOOTHING_DATA_MIRROR``; the Makefile points it at ``../shared/datasets``) into the
cache (``$OVERSMOOTHING_DATA``, default ``<repo>/data``), checked against ``data/SHA256SUMS``
and only then read by PyG.  Without a mirror PyG downloads as usual.

PyG's processed files (made from the verified raw files) are checksummed too: their SHA-256 is
recorded in ``<processed>.sha256`` right after PyG writes them, and checked before every load; a file
that differs (a flipped byte, a truncation) or has no record is rebuilt from the raw files.  They are
read with ``torch.load(weights_only=True)`` only (PyG's fallback to a full unpickling is switched off
while a dataset loads): a processed file that needs more is rebuilt from the raw files, never unpickled.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .graphs import Graph, _clean_edges

__all__ = ["DATASETS", "NOT_MIRRORED", "load", "cache_dir", "offline", "ChecksumError", "DatasetUnavailable",
           "row_normalise", "random_split"]

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
CHECKSUMS = _PACKAGE_ROOT / "data" / "SHA256SUMS"

# name -> (folder prefix in the raw layout, loader kind)
DATASETS = {
    "cora": ("Cora", "planetoid"),
    "citeseer": ("CiteSeer", "planetoid"),
    "chameleon": ("chameleon", "wikipedia"),
    "squirrel": ("squirrel", "wikipedia"),
    "chameleon_filtered": ("heterophilous/chameleon_filtered.npz", "filtered"),
    "squirrel_filtered": ("heterophilous/squirrel_filtered.npz", "filtered"),
    "pubmed": ("PubMed", "planetoid"),
}

#: datasets the loader knows but the offline mirror does not hold, and why: with a mirror set, loading one is a
#: clear error (no silent download attempt); add its raw files to the mirror and their SHA-256 to
#: data/SHA256SUMS, or unset OVERSMOOTHING_DATA_MIRROR to let PyG download it
NOT_MIRRORED = {
    "pubmed": ("its feature file ind.pubmed.allx (7578385 bytes, sha256 508e538e2abdccdd54c4d3e9f49d638b4af7107d85845f66"
               "ddea5a5152658b7e) was missing from every public copy checked when the mirror was assembled (see the "
               "mirror's README)"),
}


class ChecksumError(RuntimeError):
    """A raw data file whose SHA-256 differs from data/SHA256SUMS."""


class DatasetUnavailable(FileNotFoundError):
    """Raw files neither in the cache nor in the mirror, and no download possible."""


def cache_dir() -> Path:
    return Path(os.environ.get("OVERSMOOTHING_DATA", _PACKAGE_ROOT / "data")).resolve()


def _mirror() -> Path | None:
    m = os.environ.get("OVERSMOOTHING_DATA_MIRROR")
    return Path(m).resolve() if m else None


def _checksums(prefix: str) -> dict[str, str]:
    if not CHECKSUMS.exists():
        return {}
    out = {}
    for line in CHECKSUMS.read_text().splitlines():
        digest, _, rel = line.strip().partition("  ")
        if rel.startswith(prefix):
            out[rel] = digest
    return out


def offline() -> list[str]:
    """The datasets whose raw files data/SHA256SUMS lists, i.e. those the offline mirror provides."""
    return [name for name, (prefix, _) in DATASETS.items() if _checksums(prefix)]


def _absent_offline(key: str, kind: str, prefix: str, root: Path) -> str | None:
    """Why ``key`` cannot be loaded offline (a mirror is set, SHA256SUMS lists none of its files and the cache
    holds no raw file of it), or None if it can be tried."""
    if _mirror() is None or kind == "filtered" or not CHECKSUMS.exists() or _checksums(prefix):
        return None   # no mirror, no checksum list to know what it holds, or the mirror has it
    raw = [root / prefix / "raw", root / prefix / "geom-gcn" / "raw", root / prefix.lower() / "geom_gcn" / "raw"]
    if any(d.is_dir() and any(d.iterdir()) for d in raw):
        return None
    why = NOT_MIRRORED.get(key, "data/SHA256SUMS lists none of its raw files")
    return (f"dataset {key!r} is not in the offline mirror (OVERSMOOTHING_DATA_MIRROR={_mirror()}): {why}. Available "
            f"offline: {', '.join(offline())}. To use it, add its raw files to the mirror and their SHA-256 to "
            f"{CHECKSUMS}, or unset OVERSMOOTHING_DATA_MIRROR to let PyG download it")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _ensure_raw(prefix: str, root: Path) -> bool:
    """Copy the dataset's raw files from the mirror into ``root`` if missing, then verify every
    one against SHA256SUMS.  Returns False if no file is known or available (PyG may download)."""
    wanted = _checksums(prefix)
    mirror = _mirror()
    for rel, digest in wanted.items():
        dst = root / rel
        if not dst.exists():
            if mirror is not None and not mirror.is_dir():
                raise DatasetUnavailable(
                    f"{rel} not found in {root}, and the mirror OVERSMOOTHING_DATA_MIRROR={mirror} does not exist; "
                    "point it at the folder holding SHA256SUMS and the raw files, or unset it to let PyG download")
            src = mirror / rel if mirror else None
            if src is None or not src.exists():
                return False
            if _sha256(src) != digest:
                raise ChecksumError(f"mirror file {src} has the wrong SHA-256 (expected {digest}); "
                                    f"the mirror copy is corrupt")
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_suffix(dst.suffix + ".part")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)  # never leave a half-copied file under its real name
        if _sha256(dst) != digest:
            raise ChecksumError(f"{dst} has the wrong SHA-256 (expected {digest} from {CHECKSUMS}); "
                                f"delete it so it is copied again from the mirror")
    return bool(wanted)


def _processed_dir(kind: str, root: Path, prefix: str, split) -> Path:
    """Where PyG keeps the processed files of a dataset (as PyG's ``processed_dir`` computes it)."""
    if kind == "planetoid":
        return root / prefix / ("processed" if split is None else "geom-gcn/processed")
    return root / prefix.lower() / "geom_gcn" / "processed"


def _record_path(processed: Path) -> Path:
    return processed.with_name(processed.name + ".sha256")


def _hashes(processed: Path) -> dict[str, str]:
    return {p.name: _sha256(p) for p in sorted(processed.iterdir()) if p.is_file()}


def _verify_processed(name: str, processed: Path) -> None:
    """Keep PyG's processed files only if they are those recorded when PyG wrote them; otherwise remove
    them (with a warning naming the file when it differs from its record) so PyG rebuilds them from the
    verified raw files."""
    record = _record_path(processed)
    if not processed.is_dir():
        record.unlink(missing_ok=True)
        return
    try:
        expected = json.loads(record.read_text())
    except (OSError, ValueError):
        expected = None
    if expected is not None:
        actual = _hashes(processed)
        bad = sorted(f for f in set(expected) | set(actual) if expected.get(f) != actual.get(f))
        if not bad:
            return
        warnings.warn(f"dataset {name}: {processed / bad[0]} differs from the SHA-256 recorded when it was "
                      f"made ({record}); rebuilding {processed} from the verified raw files", stacklevel=3)
    shutil.rmtree(processed)     # no record: made before records existed, or by an interrupted run
    record.unlink(missing_ok=True)


def _record_processed(processed: Path) -> None:
    record = _record_path(processed)
    if processed.is_dir() and not record.is_file():
        tmp = record.with_name(record.name + ".part")
        tmp.write_text(json.dumps(_hashes(processed), indent=1))
        os.replace(tmp, record)


@contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (two processes never process the same dataset at once)."""
    try:
        import fcntl
    except ImportError:      # not POSIX: no lock
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


_STRICT = threading.RLock()


@contextmanager
def _weights_only():
    """While the block runs, ``torch.load`` and PyG's ``torch_geometric.io.fs.torch_load`` (which falls back
    to ``weights_only=False`` when the safe load fails) load tensors and plain containers only: any
    ``weights_only=False`` request becomes ``weights_only=True`` (in this process, for the block's duration)."""
    import torch_geometric.io.fs as pyg_fs

    real = torch.load

    def strict_load(f, map_location=None, *args, **kw):
        kw["weights_only"] = True
        return real(f, map_location, *args, **kw)

    def strict_pyg_load(path, map_location=None):
        with open(path, "rb") as f:
            return real(f, map_location, weights_only=True)

    with _STRICT:
        saved = pyg_fs.torch_load
        torch.load, pyg_fs.torch_load = strict_load, strict_pyg_load
        try:
            yield
        finally:
            torch.load, pyg_fs.torch_load = real, saved


def _pyg_dataset(kind: str, root: Path, prefix: str, split, processed: Path, name: str):
    """PyG's dataset, its processed files read strictly; a processed file the strict loader refuses is
    reported and rebuilt (once) from the verified raw files."""
    from torch_geometric.datasets import Planetoid, WikipediaNetwork

    def make():
        with _weights_only():
            if kind == "planetoid":
                return Planetoid(str(root), prefix, split="public" if split is None else "geom-gcn")
            return WikipediaNetwork(str(root), prefix, geom_gcn_preprocess=True)
    try:
        return make()
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as err:
        if not processed.is_dir():
            raise
        warnings.warn(f"dataset {name}: a processed file in {processed} is not plain tensors "
                      f"({type(err).__name__}: {str(err).splitlines()[0][:120]}); rebuilding it from the verified "
                      "raw files", stacklevel=3)
        shutil.rmtree(processed)
        _record_path(processed).unlink(missing_ok=True)
        return make()


def _masks(data, split: int | None):
    masks = [data.train_mask, data.val_mask, data.test_mask]
    if masks[0].dim() == 2:
        k = 0 if split is None else split
        if not 0 <= k < masks[0].shape[1]:
            raise ValueError(f"split must be in 0..{masks[0].shape[1] - 1}, got {split}")
        masks = [m[:, k] for m in masks]
    return [m.bool() for m in masks]


def row_normalise(graph: Graph) -> Graph:
    """The same graph with PyG's ``NormalizeFeatures`` applied to x: the smallest entry of x is subtracted from
    every entry, then each row is divided by its sum when that sum is at least 1 (a zero row stays zero).  For
    bag-of-words features (Cora, CiteSeer) every non-empty row then sums to 1."""
    x = graph.x - graph.x.min()
    x = x / x.sum(dim=-1, keepdim=True).clamp(min=1.0)
    g = Graph(x, graph.y, graph.edge_index, graph.train_mask, graph.val_mask, graph.test_mask, name=graph.name,
              meta=dict(graph.meta))
    g.meta["features"] = "row-normalised"
    return g


def random_split(graph: Graph, seed: int, train: float = 0.6, val: float = 0.2) -> Graph:
    """The same graph with new masks: a uniformly random ``train`` / ``val`` / rest split of all nodes, drawn with
    ``numpy.random.default_rng(seed)`` (round(train n) training and round(val n) validation nodes), the
    proportions of the random 60/20/20 splits paper 2's first author uses for Cora/CiteSeer/PubMed
    (``ml-postech/reverse-gnn``, ``src/utils.py``; our own draw, not their index sequence)."""
    if not (0 < train and 0 <= val and train + val < 1):
        raise ValueError(f"need 0 < train, 0 <= val and train + val < 1, got {train}, {val}")
    n = graph.num_nodes
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    n_train, n_val = int(round(train * n)), int(round(val * n))
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    masks[0][perm[:n_train]] = True
    masks[1][perm[n_train:n_train + n_val]] = True
    masks[2][perm[n_train + n_val:]] = True
    g = Graph(graph.x, graph.y, graph.edge_index, *masks, name=graph.name, meta=dict(graph.meta))
    g.meta["split"] = f"random {train:g}/{val:g}/{1 - train - val:g}, seed {seed}"
    return g


def load(name: str, split: int | None = None, root: str | os.PathLike | None = None, *,
         normalise_features: bool = False, random_split_seed: int | None = None) -> Graph:
    """Load a dataset as an undirected, self-loop-free :class:`Graph`.

    name  : cora, citeseer, chameleon, squirrel, chameleon_filtered, squirrel_filtered, pubmed (not in the
            offline mirror: with a mirror set it raises :class:`DatasetUnavailable` naming the missing file and the
            datasets available offline)
    split : None = Planetoid public split (cora/citeseer) or split 0 (others);
            an int k = the k-th of the 10 Geom-GCN (or Platonov et al.) 48/32/20 splits.
    normalise_features : apply :func:`row_normalise` (PyG's ``NormalizeFeatures``).
    random_split_seed  : replace the masks by :func:`random_split` (60/20/20) drawn with this seed.
    ``graph.meta['pyg_num_edges']`` keeps the edge count as PyG loads it (directed, with
    self-loops for chameleon/squirrel); ``graph.num_edges`` counts the cleaned graph.
    """
    g = _load(name, split, root)
    if normalise_features:
        g = row_normalise(g)
    if random_split_seed is not None:
        g = random_split(g, random_split_seed)
    return g


def _load(name: str, split: int | None, root) -> Graph:
    key = name.lower()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    if split is not None and (not isinstance(split, (int, np.integer)) or split < 0):
        raise ValueError(f"split must be None or a non-negative int, got {split!r}")
    prefix, kind = DATASETS[key]
    root = Path(root).resolve() if root else cache_dir()
    root.mkdir(parents=True, exist_ok=True)

    absent = _absent_offline(key, kind, prefix, root)
    if absent:
        raise DatasetUnavailable(absent)
    try:
        with _locked(root / f".{key}.lock"):
            have = _ensure_raw(prefix, root)
            if kind == "filtered":
                if not have:
                    raise DatasetUnavailable(f"{prefix} not found in {root} nor in the mirror "
                                             f"(OVERSMOOTHING_DATA_MIRROR={_mirror()}); PyG cannot download it")
                return _load_filtered(key, root / prefix, 0 if split is None else split)
            processed = _processed_dir(kind, root, prefix, split)
            _verify_processed(key, processed)
            ds = _pyg_dataset(kind, root, prefix, split, processed, key)
            if Path(ds.processed_dir).resolve() != processed.resolve():   # (a PyG change of layout)
                raise RuntimeError(f"PyG keeps {name!r} in {ds.processed_dir}, not {processed}: "
                                   "update datasets._processed_dir")
            _record_processed(processed)
    except (OSError, RuntimeError) as err:
        if isinstance(err, (ChecksumError, DatasetUnavailable)):
            raise
        raise DatasetUnavailable(f"could not load {name!r} from {root} (mirror: {_mirror()}): {err}") from err
    data = ds[0]
    n = data.num_nodes
    g = Graph(data.x.float(), data.y.long(), _clean_edges(data.edge_index, n), *_masks(data, split), name=key)
    g.meta["pyg_num_edges"] = int(data.edge_index.shape[1])
    g.meta["split"] = "public" if split is None and kind == "planetoid" else (split or 0)
    return g


def _load_filtered(name: str, path: Path, split: int) -> Graph:
    z = np.load(path, allow_pickle=False)
    x = torch.tensor(z["node_features"]).float()
    y = torch.tensor(z["node_labels"]).long()
    edges = torch.tensor(z["edges"]).long().t()
    n = x.shape[0]
    k = z["train_masks"].shape[0]
    if not 0 <= split < k:
        raise ValueError(f"split must be in 0..{k - 1}, got {split}")
    masks = [torch.tensor(z[f"{m}_masks"][split]).bool() for m in ("train", "val", "test")]
    g = Graph(x, y, _clean_edges(edges, n), *masks, name=name)
    g.meta.update(pyg_num_edges=int(edges.shape[1]), split=split)
    return g
