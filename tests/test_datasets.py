"""Offline loading from the mirror into the cache, with checksums (counts from shared/datasets/README.md)."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from oversmoothing import datasets as D

MIRROR = os.environ.get("OVERSMOOTHING_DATA_MIRROR") or str(Path(__file__).resolve().parents[2] / "shared" / "datasets")
pytestmark = pytest.mark.skipif(not Path(MIRROR, "SHA256SUMS").exists(), reason=f"no dataset mirror at {MIRROR}")


@pytest.fixture(autouse=True)
def mirror(monkeypatch):
    monkeypatch.setenv("OVERSMOOTHING_DATA_MIRROR", MIRROR)


# name, split, nodes, edges as PyG loads them, undirected edges without self-loops (both directions),
# features, classes, (train, val, test) sizes
EXPECTED = [
    ("cora", None, 2708, 10556, 10556, 1433, 7, (140, 500, 1000)),
    ("cora", 0, 2708, 10556, 10556, 1433, 7, (1192, 796, 497)),
    ("citeseer", None, 3327, 9104, 9104, 3703, 6, (120, 500, 1000)),
    ("citeseer", 0, 3327, 9104, 9104, 3703, 6, (1596, 1065, 666)),
    ("chameleon", 0, 2277, 36101, 62742, 2325, 5, (1092, 729, 456)),
    ("squirrel", 0, 5201, 217073, 396706, 2089, 5, (2496, 1664, 1041)),
    ("chameleon_filtered", 0, 890, 8854, 17708, 2325, 5, (409, 287, 194)),
    ("squirrel_filtered", 0, 2223, 46998, 93996, 2089, 5, (1053, 718, 452)),
]


@pytest.mark.parametrize("name,split,nodes,pyg_edges,edges,features,classes,sizes", EXPECTED,
                         ids=[f"{e[0]}-{e[1]}" for e in EXPECTED])
def test_dataset_loads_offline_with_documented_counts(name, split, nodes, pyg_edges, edges, features, classes, sizes):
    g = D.load(name, split=split)
    assert (g.num_nodes, g.num_features, g.num_classes) == (nodes, features, classes)
    assert g.meta["pyg_num_edges"] == pyg_edges
    assert g.num_edges == edges
    assert tuple(int(m.sum()) for m in (g.train_mask, g.val_mask, g.test_mask)) == sizes
    src, dst = g.edge_index
    assert not (src == dst).any()


def _copy_cora(tmp_path):
    D.load("cora", root=tmp_path)  # copies from the mirror into tmp_path and processes
    return tmp_path / "Cora" / "raw" / "ind.cora.x"


def test_corrupted_cache_file_gives_a_checksum_error_naming_it(tmp_path):
    raw = _copy_cora(tmp_path)
    data = bytearray(raw.read_bytes())
    data[100] ^= 0xFF
    raw.write_bytes(bytes(data))
    with pytest.raises(D.ChecksumError, match=r"ind\.cora\.x has the wrong SHA-256"):
        D.load("cora", root=tmp_path)


def test_corrupted_mirror_file_is_not_copied(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    shutil.copytree(Path(MIRROR) / "heterophilous", mirror / "heterophilous")
    target = mirror / "heterophilous" / "chameleon_filtered.npz"
    target.chmod(0o644)
    with open(target, "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    monkeypatch.setenv("OVERSMOOTHING_DATA_MIRROR", str(mirror))
    cache = tmp_path / "cache"
    with pytest.raises(D.ChecksumError, match="chameleon_filtered.npz has the wrong SHA-256"):
        D.load("chameleon_filtered", root=cache)
    assert not list(cache.rglob("*.npz")) and not list(cache.rglob("*.part"))  # nothing half-written left


def test_missing_data_without_a_mirror_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERSMOOTHING_DATA_MIRROR", str(tmp_path / "nowhere"))
    with pytest.raises(D.DatasetUnavailable, match="squirrel_filtered.npz not found"):
        D.load("squirrel_filtered", root=tmp_path / "cache")


@pytest.mark.parametrize("name,split,match", [
    ("pubmedx", None, "unknown dataset 'pubmedx'; choose one of .*cora"),   # pubmed itself: tests/test_questions.py
    ("cora", -1, "split must be None or a non-negative int"),
    ("cora", 10, "split must be in 0..9"),
    ("chameleon_filtered", 12, "split must be in 0..9"),
])
def test_bad_dataset_arguments(name, split, match):
    with pytest.raises(ValueError, match=match):
        D.load(name, split=split)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_processed_file_is_rebuilt_from_the_raw_files(tmp_path, damage):
    """A flipped byte in PyG's processed data.pt once loaded silently with a NaN feature; a truncated one
    gave "checkpoint file is corrupted" naming no file. Both are now rebuilt, with a warning naming the file."""
    g0 = D.load("cora", root=tmp_path)
    processed = tmp_path / "Cora" / "processed" / "data.pt"
    record = tmp_path / "Cora" / "processed.sha256"
    assert record.is_file()
    data = bytearray(processed.read_bytes())
    if damage == "flip":
        for i in (len(data) // 3, len(data) // 3 + 1):
            data[i] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    processed.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"processed/data\.pt differs from the SHA-256 recorded.*rebuilding"):
        g1 = D.load("cora", root=tmp_path)
    assert torch.isfinite(g1.x).all() and torch.equal(g1.x, g0.x) and torch.equal(g1.edge_index, g0.edge_index)
    assert D._sha256(processed) == json.loads(record.read_text())["data.pt"]


def test_processed_files_without_a_record_are_rebuilt(tmp_path):
    D.load("cora", root=tmp_path)
    (tmp_path / "Cora" / "processed.sha256").unlink()
    processed = tmp_path / "Cora" / "processed" / "data.pt"
    processed.write_bytes(processed.read_bytes()[:100])      # e.g. an interrupted processing run
    g = D.load("cora", root=tmp_path)
    assert g.num_nodes == 2708 and torch.isfinite(g.x).all()


def test_a_nonexistent_mirror_is_named_as_such(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERSMOOTHING_DATA_MIRROR", str(tmp_path / "no_such_mirror"))
    with pytest.raises(D.DatasetUnavailable, match=r"mirror OVERSMOOTHING_DATA_MIRROR=.*no_such_mirror does not exist"):
        D.load("cora", root=tmp_path / "cache")
