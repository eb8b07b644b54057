"""A run cache and a cluster safe to share: data-only entries (nothing in the cache folder is ever executed),
integrity checked, every hostile case a one-line message and no wrong result; `oversmoothing cache`; Dask TLS."""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import torch

from oversmoothing import book, graphs, grid, models, training
from oversmoothing.book import cli
from oversmoothing.grid import cache, codec

ROOT = Path(__file__).resolve().parents[1]
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the Dask workers cannot import this test module


def table(cfg):
    """A cheap run: appends a line to cfg['log'], returns (a DataFrame with a str column, a dict)."""
    with open(cfg["log"], "a") as f:
        f.write("run\n")
    n = cfg.get("n", 5)
    return pd.DataFrame({"x": np.arange(n) * 0.1, "name": [f"r{i}" for i in range(n)]}), {"n": n, "nan": math.nan}


def runs(log) -> int:
    return len(Path(log).read_text().splitlines()) if Path(log).exists() else 0


def same(a, b, where="result"):
    """Exact equality of two results: types, dtypes, values (NaN equal to NaN), key order, index, names."""
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert a.attrs == b.attrs
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, training.History):
        for f in ("epochs", "layers", "diverged_at", "meta"):
            same(getattr(a, f), getattr(b, f), f"{where}.{f}")
    elif isinstance(a, float):
        assert (a == b and math.copysign(1, a) == math.copysign(1, b)) or (math.isnan(a) and math.isnan(b)), where
    else:
        assert a == b, where


def one_line(rec) -> str:
    """The warning as Python prints it: one line, no source line."""
    text = warnings.formatwarning(rec.message, rec.category, rec.filename, rec.lineno)
    assert text.count("\n") == 1, text
    return str(rec.message)


def entry_of(folder, log, n=5):
    cfg = dict(log=str(log), n=n)
    res = grid.run_grid(table, [cfg], cache=folder, device="cpu")
    [path] = Path(folder).rglob("*.run")
    return cfg, res[0], path


def recomputed_with(folder, cfg, log, pattern):
    before = runs(log)
    with pytest.warns(grid.CacheWarning) as recs:
        res = grid.run_grid(table, [cfg], cache=folder, device="cpu")
    msgs = [one_line(r) for r in recs if r.category is grid.CacheWarning]
    assert len(msgs) == 1 and re.search(pattern, msgs[0]), msgs
    assert res.computed == 1 and runs(log) == before + 1
    return res[0]


def forge(path: Path, tree, npz: bytes = b"", **header):
    """Write a well-formed entry (a correct SHA-256: the attacker computes it too) holding ``tree``."""
    line = json.dumps(tree).encode() + b"\n"
    payload = line + npz
    head = dict(format=1, key=path.stem, fn="x", config={}, chapter="manual", lib="0" * 64, device="cpu",
                versions={}, seconds=0.0, written=time.time(), sha256=hashlib.sha256(payload).hexdigest(),
                tree_bytes=len(line), payload_bytes=len(payload)) | header
    path.write_bytes(cache.MAGIC + json.dumps(head).encode() + b"\n" + payload)


class Evil:
    """Unpickling it creates the folder ``marker`` (proof that code ran)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


# ----------------------------------------------------------------------------- nothing in the folder is executed
def test_planted_pickles_are_never_executed(tmp_path):
    folder, log, marker = tmp_path / "c", tmp_path / "log", tmp_path / "PWNED"
    cfg, good, path = entry_of(folder, log)
    path.with_suffix(".pkl").write_bytes(cloudpickle.dumps({"key": path.stem, "result": Evil(marker)}))
    path.unlink()                                    # an old-format entry of the same key, then
    res = grid.run_grid(table, [cfg], cache=folder, device="cpu")
    assert res.computed == 1 and not marker.exists()  # ... ignored: recomputed, never unpickled
    import io
    buf = io.BytesIO()
    np.savez(buf, a0=np.array([Evil(marker)], dtype=object))  # a .npy member that is a pickle
    forge(path, {"t": "nd", "ref": "a0"}, buf.getvalue())
    recomputed_with(folder, cfg, log, r"is damaged \(schema error: ValueError: .*pickle")
    for cls in ("os:system", "oversmoothing.__main__:X", "oversmoothing.book.cli:X", "subprocess:Popen"):
        forge(path, {"t": "dataclass", "cls": cls, "fields": [["args", "touch " + str(marker)]]})
        recomputed_with(folder, cfg, log, r"schema error: ValueError: class .* is not a dataclass of the oversmoothing")
    assert not marker.exists() and "oversmoothing.__main__" not in sys.modules
    same(good, grid.run_grid(table, [cfg], cache=folder, device="cpu")[0])


def test_tampered_truncated_and_malformed_entries_are_recomputed(tmp_path):
    folder, log = tmp_path / "c", tmp_path / "log"
    cfg, good, path = entry_of(folder, log)
    sound = path.read_bytes()
    flipped = bytearray(sound)
    flipped[-5] ^= 0x01                               # one byte of the payload
    cases = [(bytes(flipped), r"\(sha256 mismatch\)"),
             (sound[:-7], r"\(truncated: \d+ of \d+ payload bytes\)"),
             (sound[:30], r"\(truncated: no complete header\)"),
             (b"", r"\(empty file\)"),
             (b"\x80\x04garbage", r"\(not a run-cache entry: bad first line\)"),
             (sound.replace(b'"format":1', b'"format":9', 1), r"\(format 9, expected 1\)"),
             (sound.replace(b'"lib":', b'"lob":', 1), r"\(schema error: header field 'lib' is missing or not str\)"),
             (sound.replace(path.stem.encode(), b"f" * 64, 1), r"\(it holds key f{12}\.\.\., not \w{12}\.\.\.\)")]
    for data, pattern in cases:
        path.write_bytes(data)
        same(good, recomputed_with(folder, cfg, log, rf"grid cache entry {re.escape(str(path))} is damaged {pattern}; "
                                                    "recomputing it"))
        assert path.read_bytes() != data              # overwritten with a sound entry
    forge(path, {"t": "bogus"})
    recomputed_with(folder, cfg, log, r"schema error: ValueError: unknown node type 'bogus'")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hit = grid.run_grid(table, [cfg], cache=folder, device="cpu")
    assert hit.cached == 1 and not list(folder.rglob("*.tmp"))


# ----------------------------------------------------------------------------- writes that fail
@pytest.mark.parametrize("where, error", [("mkstemp", errno.EACCES), ("mkstemp", errno.EROFS), ("fsync", errno.ENOSPC)])
def test_unwritable_or_full_cache_gives_one_line_and_the_result(tmp_path, monkeypatch, where, error):
    folder, log = tmp_path / "c", tmp_path / "log"
    folder.mkdir()
    monkeypatch.setattr(cache, "_UNWRITABLE", set())

    def fail(*a, **k):
        raise OSError(error, os.strerror(error))
    if where == "mkstemp":
        folder.chmod(0o555)                           # (root ignores it: the error is also simulated)
        monkeypatch.setattr(cache.tempfile, "mkstemp", fail)
    else:
        monkeypatch.setattr(cache.os, "fsync", fail)
    cfgs = [dict(log=str(log), n=n) for n in (3, 4)]
    with pytest.warns(grid.CacheWarning) as recs:
        res = grid.run_grid(table, cfgs, cache=folder, device="cpu")
    msgs = [one_line(r) for r in recs]
    assert len(msgs) == 1 and os.strerror(error) in msgs[0]
    assert re.search(r"grid cache entry .*\.run could not be written .*; the run's result is used but not cached",
                     msgs[0])
    assert res.computed == 2 and [len(r[0]) for r in res] == [3, 4]
    folder.chmod(0o755)
    assert not list(folder.rglob("*.run")) and not list(folder.rglob("*.tmp"))


def test_a_result_that_is_not_data_is_returned_not_cached(tmp_path):
    with pytest.warns(grid.CacheWarning, match=r"its result is used but not cached \(result\[1\] = <object"):
        res = grid.run_grid(_not_data, [dict(i=1)], cache=tmp_path / "c", device="cpu")
    assert res[0][0] == 1 and not list((tmp_path / "c").rglob("*.run"))


def _not_data(cfg):
    return cfg["i"], object()


WRITER = """
import sys
import numpy as np, pandas as pd
from oversmoothing.grid import cache
def fn(cfg):
    pass
res = (pd.DataFrame({"x": np.arange(20000.0), "s": ["a"] * 20000}), {"who": "same"})
for _ in range(int(sys.argv[3])):
    assert cache.store(sys.argv[1], sys.argv[2], fn, {"i": 1}, res, 0.0)
"""


def test_two_processes_writing_one_entry_both_succeed_and_readers_see_sound_entries(tmp_path):
    folder, key = tmp_path / "c", "ab" + "0" * 62
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    procs = [subprocess.Popen([sys.executable, str(script), str(folder), key, "25"], env=env) for _ in range(2)]
    seen = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # a torn or half-written entry would warn
        while any(p.poll() is None for p in procs):
            hit, res = cache.load(folder, key)
            seen += hit
            if hit:
                assert len(res[0]) == 20000 and res[1] == {"who": "same"}
    assert [p.wait() for p in procs] == [0, 0]
    hit, res = cache.load(folder, key)
    assert hit and res[0]["x"].iloc[-1] == 19999.0 and not list(folder.rglob("*.tmp"))


# ----------------------------------------------------------------------------- the chapters' results round-trip
def test_every_kind_of_chapter_result_round_trips_exactly(monkeypatch):
    """The results of traps.train_run, gradients.run_task / sweep_run and remedies.depth_run on small real runs:
    encoded and decoded, equal to the computed ones (dtypes, NaN, None, index, History)."""
    from oversmoothing.experiments import gradients, remedies, traps

    seen = []
    real = grid.run_grid

    def spy(fn, configs, **kw):
        res = real(fn, configs, **{**kw, "cache": False})
        seen.extend((fn, c, r) for c, r in zip(configs, res))
        return res
    for mod in (grid, traps, gradients):
        monkeypatch.setattr(mod, "run_grid", spy)
    g = graphs.csbm(60, 2, 10.0, dim=8, ratio=3.0, seed=0)
    traps.train_grid(g, [dict(kind="GNN", depth=3, seed=0), dict(kind="MLP", depth=2, seed=1, lr=1e9)], hidden=8,
                     epochs=4, device="cpu")
    gradients.run_all(g, [dict(arch="res_gcn", depth=3), dict(arch="gcn", depth=2, lipschitz_c=1.0)], hidden=8,
                      epochs=3, record_every=3, device="cpu", progress=False)
    remedies.depth_sweep(g, ["gcn", "pairnorm"], [2], seeds=(0,), dropouts=(None, 0.5), hidden=8, epochs=3,
                         budgets=(2,), device="cpu", progress=False)
    mirror = Path(os.environ.get("OVERSMOOTHING_DATA_MIRROR", ROOT.parent / "shared" / "datasets"))
    if (mirror / "SHA256SUMS").is_file():
        monkeypatch.setenv("OVERSMOOTHING_DATA_MIRROR", str(mirror))
        gradients.sweep([dict(dataset="cora", arch="gcn", depth=2)], hidden=8, epochs=2, record_every=2, device="cpu")
    names = {fn.__name__ for fn, _, _ in seen}
    assert {"train_run", "run_task", "depth_run"} <= names
    for fn, cfg, res in seen:
        _, back = cache.unpack(cache.pack("0" * 64, fn, cfg, res, 1.0), "0" * 64)
        same(res, back, fn.__name__)


def test_the_codec_keeps_dtypes_names_and_refuses_what_is_not_data():
    df = pd.DataFrame({"i": [1, 2], "s": ["a", None], "o": [None, 1.5], "b": [True, False],
                       "c": pd.Categorical(["u", "v"]), "I": pd.array([1, None], dtype="Int64"),
                       "f4": np.float32([0.1, -0.0])}, index=pd.Index([10, 20], name="k"))
    df.attrs["unit"] = "s"
    h = training.History(df, df.set_index(["i", "s"]), None, {"wall_time_s": 0.5})
    value = {"h": h, 3: (np.float32(0.1), np.int8(-3), b"\x00"), "t": torch.arange(4.0), "s": df["o"]}
    tree, arrays = codec.encode(value)
    back = codec.decode(json.loads(json.dumps(tree)), arrays)
    same({k: v for k, v in value.items() if k not in ("t", "s")}, {k: v for k, v in back.items() if k not in ("t", "s")})
    pd.testing.assert_series_equal(value["s"], back["s"], check_exact=True)
    assert torch.equal(back["t"], value["t"]) and type(back[3][0]) is np.float32
    for bad, word in [(object(), "builtins.object"), (np.array([1, None], dtype=object), "dtype object"),
                      (pd.DataFrame({"t": pd.date_range("2020", periods=1, tz="UTC")}), "datetime64"),
                      (graphs.csbm(20, 2, 4.0, dim=2, seed=0).x.to_sparse(), "sparse"),
                      (models.VanillaGNN(2, 2, 2, 1), "VanillaGNN")]:
        with pytest.raises(TypeError, match=word):
            codec.encode({"x": bad})


# ----------------------------------------------------------------------------- no unpickling anywhere in src/
UNSAFE = ("pickle.load", "pickle.loads", "cloudpickle.load", "cloudpickle.loads", "joblib.load", "dill.load",
          "dill.loads", "pd.read_pickle", "pandas.read_pickle", "shelve.open", "pickle.Unpickler")


def test_no_unpickling_loader_is_left_in_the_library():
    """Every call in src/: no pickle/joblib/dill loader, torch.load only with weights_only=True, np.load only
    with allow_pickle=False, and no weights_only=False or allow_pickle=True anywhere."""
    import ast

    for f in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name, where = ast.unparse(node.func), f"{f.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)[:90]}"
            kw = {k.arg: getattr(k.value, "value", None) for k in node.keywords if k.arg}
            assert name not in UNSAFE, where
            assert kw.get("weights_only", True) is True and kw.get("allow_pickle", False) is False, where
            if name == "torch.load":
                assert kw.get("weights_only") is True, where
            if name in ("np.load", "numpy.load"):
                assert kw.get("allow_pickle") is False, where


def test_datasets_never_unpickle_a_planted_processed_file(tmp_path, monkeypatch):
    """A processed file whose unpickling runs code, with a matching checksum record (written by the same
    attacker): PyG's fallback to weights_only=False stays off, nothing runs, the dataset is rebuilt."""
    from oversmoothing import datasets as D

    mirror = Path(os.environ.get("OVERSMOOTHING_DATA_MIRROR", ROOT.parent / "shared" / "datasets"))
    if not (mirror / "SHA256SUMS").is_file():
        pytest.skip(f"no dataset mirror at {mirror}")
    monkeypatch.setenv("OVERSMOOTHING_DATA_MIRROR", str(mirror))
    ref = D.load("cora", root=tmp_path)
    processed = tmp_path / "Cora" / "processed"
    marker = tmp_path / "PWNED"
    for name in ("data.pt", "pre_transform.pt"):
        torch.save(Evil(marker), processed / name)
    D._record_path(processed).write_text(json.dumps(D._hashes(processed)))
    with pytest.warns(UserWarning, match=r"dataset cora: a processed file .* is not plain tensors .*rebuilding"):
        g = D.load("cora", root=tmp_path)
    assert not marker.exists() and torch.equal(g.x, ref.x) and torch.equal(g.edge_index, ref.edge_index)
    assert torch.load.__module__.startswith("torch")   # the strict loader is gone after the load


# ----------------------------------------------------------------------------- oversmoothing cache info/prune/verify
def _executed(site: Path, ch, key: str, claims: bytes | None, claims_sha: str | None):
    """An executed chapter in the notebook cache, as the runner commits it (notebook + claims + record)."""
    nb = json.loads(ch.path.read_text())
    nb["metadata"][book.cache.META] = {"key": key, "parameters": {}, "seconds": 1.0, "claims_sha256": claims_sha}
    out = site / (ch.entry + ".ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(nb))
    if claims is not None:
        out.with_name(ch.stem + ".claims.json").write_bytes(claims)


@pytest.fixture
def two_caches(tmp_path, minibook, monkeypatch):
    """A run cache with 2 current entries (chapter 04_x), 1 of an old library, an old pickle, a damaged entry
    and a stale temporary file; a notebook cache (profile smoke of the fixture book) with one chapter current,
    one out of date and one damaged."""
    folder, log = tmp_path / "runs", tmp_path / "log"
    monkeypatch.setenv("OVERSMOOTHING_CLAIMS", str(tmp_path / "tmp" / "04_x.claims.json"))
    grid.run_grid(table, [dict(log=str(log), n=n) for n in (1, 2)], cache=folder, device="cpu")
    monkeypatch.setattr(cache, "library_hash", lambda root=None: "9" * 64)
    monkeypatch.delenv("OVERSMOOTHING_CLAIMS")
    grid.run_grid(table, [dict(log=str(log), n=3)], cache=folder, device="cpu")
    monkeypatch.undo()
    (folder / "ab").mkdir(exist_ok=True)  # (a real entry may start with "ab" too)
    (folder / "ab" / ("ab" + "1" * 62 + ".pkl")).write_bytes(b"\x80\x04K\x01.")
    (folder / "ab" / ("ab" + "2" * 62 + ".run")).write_bytes(b"OVERSMOOTHING-RUN 1\n{")
    tmp = folder / "ab" / ".ab1111111111.x.tmp"
    tmp.write_bytes(b"half")
    os.utime(tmp, (time.time() - 3600,) * 2)
    staging = tmp_path / "staging"
    site = staging / "smoke" / "site"
    chs = {c.stem: c for c in book.chapters(minibook)}
    env = book.environment_digests(minibook)
    params = book.resolve_parameters(chs["01_ok"], book.profile_overrides(minibook, "smoke")["01_ok"])
    key = book.cache.chapter_key(chs["01_ok"], params, "smoke", env)
    claims = b'{"claims": []}'
    sha = hashlib.sha256(claims).hexdigest()
    _executed(site, chs["01_ok"], key, claims, sha)
    _executed(site, chs["02_raises"], "0" * 64, claims, sha)
    _executed(site, chs["03_slow"], key, b'{"claims": ["changed"]}', sha)
    return folder, staging, minibook


def cache_cli(capsys, *args):
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_cache_info_counts_both_caches(two_caches, capsys):
    folder, staging, root = two_caches
    code, out = cache_cli(capsys, "--root", root, "cache", "info", "--cache", folder, "--staging", staging)
    assert code == 0
    lib = grid.library_hash()
    assert re.search(rf"run cache {re.escape(str(folder))}: 3 entries", out)
    assert re.search(rf"library {lib[:12]} \(current\): 2 entries", out) and "library 999999999999 (old): 1 entries" in out
    assert "chapter 04_x: 2 entries" in out and "chapter manual: 1 entries" in out
    assert "old pickle entries (never read; prune removes them): 1," in out and "damaged entries: 1," in out
    assert "temporary files: 1," in out
    assert "profile smoke: 3 executed chapters" in out and "(1 current, 1 out of date, 1 damaged)" in out
    assert re.search(r"03_slow\s+damaged .*claims file differs from the record", out)


def test_cache_prune_keeps_the_current_and_frees_the_rest(two_caches, capsys):
    folder, staging, root = two_caches
    files = sorted(p for p in folder.rglob("*") if p.is_file()) + sorted(staging.rglob("*.*"))
    code, out = cache_cli(capsys, "--root", root, "cache", "prune", "--keep-current", "--dry-run", "--cache", folder,
                          "--staging", staging)
    assert code == 0 and "would free 4 files" in out and "would free 2 chapters" in out
    assert files == sorted(p for p in folder.rglob("*") if p.is_file()) + sorted(staging.rglob("*.*"))  # nothing gone
    code, out = cache_cli(capsys, "--root", root, "cache", "prune", "--keep-current", "--cache", folder,
                          "--staging", staging)
    assert code == 0 and re.search(r"run cache .*: freed 4 files, .*; 2 entries kept", out)
    left = list(folder.rglob("*.*"))
    assert len(left) == 2 and {cache.read_header(p)["lib"] for p in left} == {grid.library_hash()}
    assert sorted(p.name for p in staging.rglob("*.ipynb")) == ["01_ok.ipynb"]
    code, out = cache_cli(capsys, "--root", root, "cache", "prune", "--older-than", "1", "--cache", folder,
                          "--staging", staging)
    assert "freed 0 files" in out and len(list(folder.rglob("*.run"))) == 2   # written today
    code, out = cache_cli(capsys, "--root", root, "cache", "prune", "--cache", folder, "--staging", staging)
    assert not list(folder.rglob("*.run")) and not list(staging.rglob("*.ipynb"))


def test_cache_verify_finds_damaged_entries(two_caches, capsys):
    folder, staging, root = two_caches
    victim = next(p for p in folder.rglob("*.run") if cache.read_header(p)["chapter"] == "04_x")
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0x10
    victim.write_bytes(bytes(data))
    code, out = cache_cli(capsys, "--root", root, "cache", "verify", "--cache", folder, "--staging", staging)
    assert code == 1
    assert f"damaged: {victim} (sha256 mismatch)" in out and "run cache" in out and "2 entries sound, 2 damaged" in out
    assert re.search(r"damaged: .*03_slow.ipynb \(its claims file differs", out) and "2 chapters sound, 1 damaged" in out
    cache_cli(capsys, "--root", root, "cache", "prune", "--keep-current", "--cache", folder, "--staging", staging)
    code, out = cache_cli(capsys, "--root", root, "cache", "verify", "--cache", folder, "--staging", staging)
    assert code == 0 and "0 damaged" in out
    code, out = cache_cli(capsys, "--root", root, "cache", "info", "--dry-run")
    assert code == 2 and "are options of `cache prune`" in out


# ----------------------------------------------------------------------------- Dask with TLS
def train_small(cfg):
    g = graphs.csbm(60, 2, 10.0, dim=8, ratio=3.0, seed=cfg["seed"])
    m = models.VanillaGNN(g.num_features, 8, g.num_classes, cfg["depth"], seed=cfg["seed"])
    h = training.fit(m, g, epochs=4, device=cfg["device"], seed=cfg["seed"], progress=False)
    return h.epochs.drop(columns="seconds"), h.layers


def _certificates(folder: Path) -> dict:
    """A CA and one certificate signed by it for 127.0.0.1/localhost (scheduler, workers and client)."""
    def ssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=oversmoothing-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=localhost")
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                                    "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n")
    ssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "node.pem",
        "-days", "2", "-extfile", "ext.cnf")
    return {"ca": str(folder / "ca.pem"), "cert": str(folder / "node.pem"), "key": str(folder / "node.key")}


def test_a_tls_cluster_gives_the_same_results_as_local(tmp_path):
    distributed = pytest.importorskip("distributed")
    from distributed.security import Security

    if shutil.which("openssl") is None:
        pytest.skip("no openssl command")
    tls = _certificates(tmp_path)
    sec = Security(tls_ca_file=tls["ca"], tls_scheduler_cert=tls["cert"], tls_scheduler_key=tls["key"],
                   tls_worker_cert=tls["cert"], tls_worker_key=tls["key"], tls_client_cert=tls["cert"],
                   tls_client_key=tls["key"], require_encryption=True)
    cfgs = [dict(seed=s, depth=d) for s, d in [(0, 2), (1, 3), (2, 2)]]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = grid.run_grid(train_small, cfgs, cache=False, device="cpu")
    finally:
        torch.set_num_threads(before)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, protocol="tls", security=sec,
                                  host="127.0.0.1", dashboard_address=None, silence_logs=40) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        remote = grid.run_grid(train_small, cfgs, scheduler=address, tls=tls, cache=tmp_path / "c", device="cpu")
        assert remote.computed == 3
        for (e1, l1), (e2, l2) in zip(local, remote):
            pd.testing.assert_frame_equal(e1, e2, check_exact=True)
            pd.testing.assert_frame_equal(l1, l2, check_exact=True)
        with pytest.raises(ValueError, match="need a TLS scheduler address"):
            grid.run_grid(train_small, cfgs, scheduler=address.replace("tls://", "tcp://"), tls=tls, cache=False)
        grid.shutdown()


def test_tls_options_are_checked_and_reach_the_kernels(tmp_path):
    tls = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "c.pem"}
    with pytest.raises(book.BookError, match=r"--tls-ca .*ca.pem: no such file"):
        book.scale_out_env(None, "tls://10.0.0.5:8786", tls)
    for p in tls.values():
        p.write_text("x")
    with pytest.raises(book.BookError, match=r"need a TLS scheduler address \(tls://host:port\), got tcp://"):
        book.scale_out_env(None, "tcp://127.0.0.1:8786", tls)
    with pytest.raises(book.BookError, match=r"TLS needs --tls-ca .* and --tls-cert"):
        book.scale_out_env(None, "tls://10.0.0.5:8786", {"ca": tls["ca"]})
    env = book.scale_out_env(None, "tls://10.0.0.5:8786", tls)
    assert env["OVERSMOOTHING_TLS_CA"] == str(tls["ca"].resolve()) and env["OVERSMOOTHING_TLS_CERT"]
    assert "OVERSMOOTHING_TLS_KEY" not in env and env["OVERSMOOTHING_EXECUTOR"] == "dask"
    with pytest.raises(ValueError, match=r"tls://127.0.0.1:9 speaks TLS but no certificates are given"):
        grid.executors.client(None, "tls://127.0.0.1:9", "cpu", {})


def test_plain_tcp_to_another_host_is_warned_about_in_one_line(capsys):
    env = book.scale_out_env(None, "tcp://10.0.0.5:8786")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tcp://10.0.0.5:8786 is joined over plain TCP" in err
    assert "use tls://10.0.0.5:8786 with --tls-ca/--tls-cert/--tls-key" in err
    assert env["OVERSMOOTHING_SCHEDULER_WARNED"] == "1"           # the kernels do not repeat it
    for quiet in ("tcp://127.0.0.1:8786", "tcp://localhost:8786", "tls://10.0.0.5:8786"):
        book.scale_out_env(None, quiet)
        assert capsys.readouterr().err == "", quiet
    assert grid.security.plain_tcp_warning("tcp://gpu-node-3:8786").startswith("warning: the Dask scheduler")
