"""oversmoothing.grid.run_grid: local vs Dask (a real 2-worker LocalCluster), resumable cache, killed workers."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import cloudpickle
import pandas as pd
import pytest
import torch

import numpy as np

from oversmoothing import graphs, models, training
from oversmoothing import grid
from oversmoothing.experiments import gradients, traps

distributed = pytest.importorskip("distributed")
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module


STOP_AT = None  # the run number at which a "Ctrl-C" (KeyboardInterrupt) hits


def train_tiny(cfg):
    """A tiny vanilla GNN trained a few epochs on a small CSBM; appends a line to cfg['log'] when it runs."""
    if cfg.get("log"):
        with open(cfg["log"], "a") as f:
            f.write(f"{cfg['seed']},{cfg['depth']}\n")
        if STOP_AT is not None and runs(cfg["log"]) == STOP_AT:
            raise KeyboardInterrupt
    if cfg.get("die_once") and not os.path.exists(cfg["die_once"]):
        Path(cfg["die_once"]).touch()
        os._exit(1)  # the worker process dies mid-run (first attempt only)
    if cfg.get("fail"):
        raise ValueError("boom")
    g = graphs.csbm(60, 2, 10.0, dim=8, ratio=3.0, seed=cfg["seed"])
    m = models.VanillaGNN(g.num_features, 8, g.num_classes, cfg["depth"], seed=cfg["seed"])
    h = training.fit(m, g, epochs=cfg.get("epochs", 4), device=cfg["device"], seed=cfg["seed"], progress=False)
    return {"epochs": h.epochs.drop(columns="seconds"), "layers": h.layers, "threads": torch.get_num_threads()}


def configs(log=None, n=4, **extra):
    return [dict(seed=s, depth=d, log=log, **extra) for s, d in [(0, 2), (0, 3), (1, 2), (1, 3), (2, 2), (2, 3)][:n]]


def runs(log) -> int:
    return len(Path(log).read_text().splitlines()) if Path(log).exists() else 0


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x["epochs"], y["epochs"], check_exact=True)
        pd.testing.assert_frame_equal(x["layers"], y["layers"], check_exact=True)


@pytest.fixture(scope="module")
def dask_cluster():
    """A real 2-worker LocalCluster (grid.local_cluster, as the runner's --workers 2 would start it):
    its scheduler address, also in $OVERSMOOTHING_SCHEDULER while the module's tests run."""
    with grid.local_cluster(2) as address:
        grid.executors.client(None, address, "cpu").wait_for_workers(2, timeout=60)
        yield address
    assert "OVERSMOOTHING_SCHEDULER" not in os.environ


# ----------------------------------------------------------------------------- keys and configs
def test_library_hash_ignores_comments_and_docstrings_only(tmp_path):
    pkg = tmp_path / "pkg"
    shutil.copytree(grid.executors.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    h0 = grid.library_hash(pkg)
    f = pkg / "training.py"
    src = f.read_text()
    f.write_text("# a new comment\n" + src.replace('"""Train ``model``', '"""Trains ``model``', 1)
                 .replace("    if record_every < 1:", "    # why we check\n\n    if record_every < 1:", 1))
    assert grid.library_hash(pkg) == h0
    (pkg / "book" / "site.py").write_text("x = 1\n")  # the runner (a package) is not part of a run's result
    (pkg / "__main__.py").write_text("x = 2\n")
    assert grid.library_hash(pkg) == h0
    f.write_text(src.replace("if record_every < 1:", "if record_every < 2:", 1))
    assert grid.library_hash(pkg) != h0


def test_non_json_configs_are_refused_before_any_work(tmp_path):
    log = tmp_path / "log"
    for bad, word in [(torch.device("cpu"), r"str\(device\)"), (torch.tensor(3), r"int\(\)"), ({1: 2}, "string keys")]:
        with pytest.raises(TypeError, match=word):
            grid.run_grid(train_tiny, configs(str(log), n=1) + [dict(seed=0, depth=2, x=bad)], cache=tmp_path / "c")
    assert runs(log) == 0
    with pytest.raises(TypeError, match="must be a dict"):
        grid.run_grid(train_tiny, [[1, 2]], cache=False)


def test_key_depends_on_config_device_and_library():
    k = grid.config_key(train_tiny, dict(seed=0, depth=2), device="cpu", lib="a")
    assert k == grid.config_key(train_tiny, dict(depth=2, seed=0), device="cpu", lib="a")  # key order irrelevant
    assert k != grid.config_key(train_tiny, dict(seed=0, depth=3), device="cpu", lib="a")
    assert k != grid.config_key(train_tiny, dict(seed=0, depth=2), device="cuda", lib="a")
    assert k != grid.config_key(train_tiny, dict(seed=0, depth=2), device="cpu", lib="b")
    assert k != grid.config_key(configs, dict(seed=0, depth=2), device="cpu", lib="a")


def test_digest_is_the_content_and_plain_makes_configs_json():
    g, same, other = (graphs.csbm(60, 2, 10.0, dim=8, ratio=3.0, seed=s) for s in (0, 0, 1))
    assert g is not same and grid.digest(g) == grid.digest(same) and grid.digest(g) != grid.digest(other)
    moved = graphs.Graph(**{**g.__dict__, "x": g.x.clone()})
    moved.x[3, 2] += 1e-6
    assert grid.digest(moved) != grid.digest(g)  # one feature changed in the 7th digit
    assert grid.digest({"a": 1}) != grid.digest({"a": "1"}) != grid.digest({"a": [1]})
    assert grid.digest(torch.zeros(2, 3)) != grid.digest(torch.zeros(3, 2))
    with pytest.raises(TypeError, match=r"inputs\['f'\].*cannot be digested"):
        grid.run_grid(train_tiny, [dict(seed=0, depth=2)], inputs={"f": object()}, cache=False)
    cfg = grid.plain({"s": np.linspace(0, 1, 3)[1], "L": np.arange(3)[2], "d": (np.int64(4), 5)})
    assert cfg == {"s": 0.5, "L": 2, "d": [4, 5]} and type(cfg["L"]) is int
    grid.canonical_json(cfg)


def _with_graph(cfg, graph):
    return {"n": graph.num_nodes, "x00": float(graph.x[0, 0]), "depth": cfg["depth"]}


def test_inputs_reach_fn_and_key_the_cache(tmp_path):
    g, same, other = (graphs.csbm(60, 2, 10.0, dim=8, ratio=3.0, seed=s) for s in (0, 0, 1))
    cache = tmp_path / "c"
    first = grid.run_grid(_with_graph, [dict(depth=2)], inputs={"graph": g}, cache=cache, device="cpu")
    assert first.computed == 1 and first[0]["x00"] == float(g.x[0, 0])
    assert grid.run_grid(_with_graph, [dict(depth=2)], inputs={"graph": same}, cache=cache, device="cpu").cached == 1
    res = grid.run_grid(_with_graph, [dict(depth=2)], inputs={"graph": other}, cache=cache, device="cpu")
    assert res.computed == 1 and res[0]["x00"] == float(other.x[0, 0])  # another graph is another run


TRAP_RUNS = [dict(kind=k, depth=L, seed=s) for k in ("GNN", "MLP") for L in (2, 4) for s in (0, 1)]


def test_training_grids_of_the_chapters_run_through_run_grid(tmp_path, monkeypatch):
    """experiments.traps.train_grid: every run a cached task; a re-run trains nothing and returns the same
    tables, digit for digit, as without the cache."""
    g = graphs.csbm(60, 2, 10.0, dim=8, ratio=3.0, seed=0)
    monkeypatch.setenv("OVERSMOOTHING_GRID_CACHE", str(tmp_path / "c"))
    trained = []
    real_fit = traps.fit
    monkeypatch.setattr(traps, "fit", lambda *a, **k: trained.append(1) or real_fit(*a, **k))
    ep, la = traps.train_grid(g, TRAP_RUNS, hidden=8, epochs=6, device="cpu")
    assert len(trained) == len(TRAP_RUNS) and len(list((tmp_path / "c").rglob("*.run"))) == len(TRAP_RUNS)
    ep2, la2 = traps.train_grid(g, TRAP_RUNS, hidden=8, epochs=6, device="cpu")
    assert len(trained) == len(TRAP_RUNS)  # all read back
    monkeypatch.setenv("OVERSMOOTHING_GRID_CACHE", "off")
    ep3, la3 = traps.train_grid(g, TRAP_RUNS, hidden=8, epochs=6, device="cpu")
    assert len(trained) == 2 * len(TRAP_RUNS)  # cache off: everything trains again ...
    traps.train_grid(g, TRAP_RUNS, hidden=8, epochs=6, device="cpu")
    assert len(trained) == 2 * len(TRAP_RUNS)  # ... once per process (grid._MEMO)
    for a, b, c in ((ep, ep2, ep3), (la, la2, la3)):
        pd.testing.assert_frame_equal(a.drop(columns="seconds", errors="ignore"), b.drop(columns="seconds", errors="ignore"), check_exact=True)
        pd.testing.assert_frame_equal(a.drop(columns="seconds", errors="ignore"), c.drop(columns="seconds", errors="ignore"), check_exact=True)
    assert set(ep.model) == {"GNN L=2", "GNN L=4", "MLP L=2", "MLP L=4"} and "objective" in ep


def test_paper2_grids_take_names_or_a_graph(tmp_path, monkeypatch):
    """gradients.sweep loads datasets by name on each worker (a Graph object is refused with the way out);
    gradients.run_all trains on a given graph and returns each run's history, cached like the rest."""
    g = graphs.csbm(60, 2, 10.0, dim=8, ratio=3.0, seed=0)
    with pytest.raises(TypeError, match="dataset must be a dataset name.*run_all"):
        gradients.sweep([dict(dataset=g, arch="gcn", depth=2)], epochs=2)
    monkeypatch.setenv("OVERSMOOTHING_GRID_CACHE", str(tmp_path / "c"))
    cfgs = [dict(arch="res_gcn", depth=3), dict(arch="gcn", depth=2)]
    first = gradients.run_all(g, cfgs, hidden=8, epochs=3, record_every=3, device="cpu", progress=False)
    again = gradients.run_all(g, cfgs, hidden=8, epochs=3, record_every=3, device="cpu", progress=False)
    assert [s["arch"] for s, _ in first] == ["res_gcn", "gcn"] and len(list((tmp_path / "c").rglob("*.run"))) == 2
    for (s1, h1), (s2, h2) in zip(first, again):
        assert s1 == s2
        pd.testing.assert_frame_equal(h1.layers, h2.layers, check_exact=True)


# ----------------------------------------------------------------------------- local executor and cache
def test_interrupted_grid_resumes_from_cache(tmp_path, monkeypatch):
    log, cache = str(tmp_path / "log"), tmp_path / "cache"
    cfgs = configs(log, n=6)
    monkeypatch.setattr(sys.modules[__name__], "STOP_AT", 4)  # Ctrl-C during the 4th run
    with pytest.raises(KeyboardInterrupt):
        grid.run_grid(train_tiny, cfgs, cache=cache, device="cpu")
    monkeypatch.undo()
    assert runs(log) == 4 and len(list(cache.rglob("*.run"))) == 3
    res = grid.run_grid(train_tiny, cfgs, cache=cache, device="cpu")
    assert (res.cached, res.computed) == (3, 3) and runs(log) == 7  # runs 4-6 only
    again = grid.run_grid(train_tiny, cfgs, cache=cache, device="cpu")
    assert (again.cached, again.computed) == (6, 0) and runs(log) == 7
    assert_same(res, again)
    fresh = grid.run_grid(train_tiny, cfgs, cache=False, device="cpu")
    assert_same(res, fresh)  # a cached result is the computed one
    # another grid sharing two runs computes only the new one
    shared = grid.run_grid(train_tiny, cfgs[:2] + [dict(cfgs[0], depth=4)], cache=cache, device="cpu")
    assert (shared.cached, shared.computed) == (2, 1) and runs(log) == 7 + 6 + 1


KILLED_SCRIPT = """
import sys, time
from oversmoothing import grid

def slow(cfg):
    with open(cfg["log"], "a") as f:
        f.write(f"{cfg['i']}\\n")
    time.sleep(float(sys.argv[3]))  # not in the config: the re-run is the same grid
    return cfg["i"] ** 2

res = grid.run_grid(slow, [dict(i=i, log=sys.argv[1]) for i in range(6)], cache=sys.argv[2],
                    device="cpu", progress=False)
print("computed", res.computed, "cached", res.cached, "results", list(res))
"""


def test_killed_process_resumes_from_the_cache(tmp_path):
    """A kernel killed (SIGKILL) in the middle of a grid keeps the runs it finished: the re-run computes
    only the others (counted in the runs' own log)."""
    import subprocess
    import time

    script, log, cache = tmp_path / "grid_script.py", tmp_path / "log", tmp_path / "cache"
    script.write_text(KILLED_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(grid.__file__).parents[2])] + sys.path)}
    proc = subprocess.Popen([sys.executable, str(script), str(log), str(cache), "0.4"], env=env)
    deadline = time.time() + 60
    while runs(log) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    started = runs(log)
    finished = len(list(cache.rglob("*.run")))
    assert 2 <= finished < 6 and not list(cache.rglob("*.tmp"))
    out = subprocess.run([sys.executable, str(script), str(log), str(cache), "0"], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert f"computed {6 - finished} cached {finished}" in out and "[0, 1, 4, 9, 16, 25]" in out
    assert runs(log) == started + 6 - finished


def test_changed_config_or_library_misses_the_cache(tmp_path, monkeypatch):
    log, cache = str(tmp_path / "log"), tmp_path / "cache"
    grid.run_grid(train_tiny, configs(log, n=2), cache=cache, device="cpu")
    assert runs(log) == 2
    grid.run_grid(train_tiny, configs(log, n=2, epochs=3), cache=cache, device="cpu")  # new config value
    assert runs(log) == 4
    monkeypatch.setattr(grid, "library_hash", lambda root=None: "another library")
    res = grid.run_grid(train_tiny, configs(log, n=2), cache=cache, device="cpu")
    assert runs(log) == 6 and res.computed == 2


def test_damaged_entry_is_recomputed_and_errors_name_the_config(tmp_path):
    log, cache = str(tmp_path / "log"), tmp_path / "cache"
    grid.run_grid(train_tiny, configs(log, n=1), cache=cache, device="cpu")
    [entry] = cache.rglob("*.run")
    entry.write_bytes(entry.read_bytes()[:50])  # truncated
    with pytest.warns(UserWarning, match=r"is damaged \(truncated: .*\); recomputing it"):
        res = grid.run_grid(train_tiny, configs(log, n=1), cache=cache, device="cpu")
    assert res.computed == 1 and runs(log) == 2
    with pytest.raises(grid.GridError, match=r'run 1 failed for config .*"fail":true.*ValueError: boom'):
        grid.run_grid(train_tiny, configs(log, n=1) + [dict(seed=5, depth=2, fail=True)], cache=cache, device="cpu")
    assert not list(cache.rglob("*.tmp"))


def test_local_executor_leaves_threads_alone(tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        [res] = grid.run_grid(train_tiny, configs(n=1), cache=False, device="cpu")
        assert res["threads"] == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="needs executor='dask'"):
        grid.run_grid(train_tiny, configs(n=1), executor="local", workers=2, cache=False)


def test_stack_tags_rows_and_per_process_memoises(tmp_path):
    cfgs = configs(n=2)
    res = grid.run_grid(train_tiny, cfgs, cache=False, device="cpu", workers=1)  # one worker = in-process
    ep = grid.stack(res, cfgs, "epochs")
    assert len(ep) == sum(len(r["epochs"]) for r in res)
    assert ep.groupby(["seed", "depth"]).size().to_dict() == {(0, 2): 5, (0, 3): 5}
    made = []
    assert grid.per_process(("t", 1), lambda: made.append(1) or "x") == "x"
    assert grid.per_process(("t", 1), lambda: made.append(1) or "y") == "x" and made == [1]


# ----------------------------------------------------------------------------- Dask
def test_dask_equals_local_digit_for_digit(tmp_path, dask_cluster):
    log = str(tmp_path / "log")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = grid.run_grid(train_tiny, configs(n=4), cache=False, device="cpu")
    finally:
        torch.set_num_threads(before)
    remote = grid.run_grid(train_tiny, configs(log, n=4), cache=tmp_path / "c", device="cpu")  # $OVERSMOOTHING_SCHEDULER
    assert remote.computed == 4 and runs(log) == 4
    assert_same(local, remote)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert {r["threads"] for r in remote} == {max(1, cores // 2)}  # fair share of the cores, no oversubscription
    # joining the running cluster by address finds every run in the cache
    again = grid.run_grid(train_tiny, configs(log, n=4), scheduler=dask_cluster,
                          cache=tmp_path / "c", device="cpu")
    assert again.cached == 4 and runs(log) == 4


def test_chapter_grid_on_dask_equals_local(tmp_path, dask_cluster, monkeypatch):
    """traps.train_grid with the graph scattered to the workers: the same tables as in-process."""
    g = graphs.csbm(60, 2, 10.0, dim=8, ratio=3.0, seed=0)
    monkeypatch.setenv("OVERSMOOTHING_GRID_CACHE", "off")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with monkeypatch.context() as m:
            m.delenv("OVERSMOOTHING_SCHEDULER")
            local = traps.train_grid(g, TRAP_RUNS, hidden=8, epochs=6, device="cpu")
    finally:
        torch.set_num_threads(before)
    remote = traps.train_grid(g, TRAP_RUNS, hidden=8, epochs=6, device="cpu")  # $OVERSMOOTHING_SCHEDULER is set
    for a, b in zip(local, remote):
        pd.testing.assert_frame_equal(a.drop(columns="seconds", errors="ignore"), b.drop(columns="seconds", errors="ignore"),
                                      check_exact=True)


def scaled_sum(cfg, x):
    return float(x.sum()) * cfg["seed"]


def test_dask_same_input_in_consecutive_grids(dask_cluster):
    """Grid after grid with an identical input (chapter 09's sweeps scatter the same graph again as soon as the
    previous grid released it): no "lost dependencies" (a scatter key shared with the previous grid's input, e.g.
    the input's name, races with that input's release)."""
    x = torch.arange(1000.0)
    for i in range(30):
        out = grid.run_grid(scaled_sum, [dict(seed=i), dict(seed=i + 1)], inputs=dict(x=x), cache=False, device="cpu")
        assert list(out) == [float(x.sum()) * i, float(x.sum()) * (i + 1)]


def test_dask_task_error_names_the_config(tmp_path, dask_cluster):
    cfgs = configs(n=2) + [dict(seed=9, depth=2, fail=True)]
    with pytest.raises(grid.GridError, match=r'run 2 failed for config .*"seed":9.*boom'):
        grid.run_grid(train_tiny, cfgs, executor="dask", cache=tmp_path / "c", device="cpu", retries=0)
    assert len(list((tmp_path / "c").rglob("*.run"))) <= 2  # the failed run is never cached


def test_dask_killed_worker_loses_no_run(tmp_path, dask_cluster):  # last: the killed worker restarts slowly
    log, cache = str(tmp_path / "log"), tmp_path / "c"
    cfgs = configs(log, n=4)
    cfgs[1] = dict(cfgs[1], die_once=str(tmp_path / "died"))  # its worker process exits during the run
    res = grid.run_grid(train_tiny, cfgs, scheduler=dask_cluster, cache=cache, device="cpu")
    assert (tmp_path / "died").exists()
    assert len(res) == 4 and all(r is not None for r in res) and res.computed == 4
    ref = grid.run_grid(train_tiny, [{k: v for k, v in c.items() if k != "die_once"} for c in cfgs],
                        cache=False, device="cpu")
    assert_same(ref, res)
    assert len(list(cache.rglob("*.run"))) == 4


def test_worker_with_another_library_refuses_the_run():
    with pytest.raises(grid.GridError, match="differs from the client's"):
        grid.executors._task(train_tiny, configs(n=1)[0], "0" * 64, "cpu", {}, 0)
