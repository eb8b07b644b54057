"""The benchmarks' own logic (the timed runs themselves live in benchmarks/, never in the test suite)."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_gpu_compares_verdicts_and_metrics_within_its_tolerance():
    gpu = _module("bench_gpu")
    claims = {"claims": [{"id": "C1", "verdict": "reproduced", "readings": [{"verdict": "not reproduced"}]}],
              "metrics": {"acc": 0.80, "rate": 1e-3, "nan": None}}
    same = gpu.compare({"01": claims}, {"01": claims})["01"]
    assert same == {"verdicts_equal": True, "metrics_outside_tolerance": [], "largest_relative_difference": 0.0,
                    "verdict_changes": []}
    moved = {"claims": [{"id": "C1", "verdict": "partly reproduced", "readings": [{"verdict": "not reproduced"}]}],
             "metrics": {"acc": 0.80 * (1 + gpu.RTOL) + gpu.ATOL + 1e-6, "rate": 1.1e-3, "nan": None}}
    out = gpu.compare({"01": claims}, {"01": moved})["01"]
    assert not out["verdicts_equal"] and out["metrics_outside_tolerance"] == ["acc"]
    assert out["verdict_changes"] == [(("C1", "reproduced", [(None, "not reproduced")]),
                                       ("C1", "partly reproduced", [(None, "not reproduced")]))]
    assert gpu.compare({"01": claims}, {})["01"] == {"missing": True}
    assert "--device cuda" in gpu.command() and ".gpu_data/datasets" in gpu.command()


def test_bench_batching_compares_the_same_networks_with_the_same_gradients():
    """The batched models of bench_batching are the R library models side by side: the same logits, and each run's
    gradient from the summed loss is its own model's gradient (so the timing compares the same training)."""
    import torch
    import torch.nn.functional as F

    from oversmoothing import graphs as G
    from oversmoothing import models
    from oversmoothing.signals import loss_fn

    bb = _module("bench_batching")
    torch.manual_seed(0)
    for kind in ("res_gcn", "gnn"):
        if kind == "res_gcn":
            g = G.csbm(200, 2, 4, ratio=3.0, seed=0)  # sparse operator: the block-diagonal path
            nets = [models.ResidualGCN(g.num_features, 8, g.num_classes, 5, lipschitz_c=2.0, seed=s) for s in range(3)]
            big, op = bb.BatchedResidualGCN(nets, 2.0), nets[0].operator(g)
            assert op.layout == torch.sparse_csr
            op_b, own = bb._block_diagonal(op, 3), lambda b, k: b.W_raw[k]
            mine = lambda n, k: n.layers[k].parametrizations.weight.original  # noqa: E731
        else:
            g = G.csbm(60, 2, 50, seed=0)  # dense operator: one broadcast product
            nets = [models.VanillaGNN(g.num_features, 8, g.num_classes, 4, activation="centred_softplus", s=1.5, seed=s)
                    for s in range(3)]
            big, op = bb.BatchedVanillaGNN(nets), nets[0].operator(g)
            assert op.layout == torch.strided
            op_b, own, mine = op, (lambda b, k: b.W[k]), (lambda n, k: n.layers[k].weight)
        logits = big(g.x, op_b)
        singles = [n(g.x, op) for n in nets]
        torch.testing.assert_close(logits, torch.stack(singles), rtol=1e-5, atol=1e-6)
        m = g.train_mask
        F.cross_entropy(logits[:, m].reshape(-1, logits.shape[-1]), g.y[m].repeat(3), reduction="sum").div(int(m.sum())).backward()
        for r, (n, out) in enumerate(zip(nets, singles)):
            loss_fn("ce")(out, g.y, m).backward()
            for k in (0, len(nets[0].layers) - 1):
                torch.testing.assert_close(own(big, k).grad[r], mine(n, k).grad, rtol=1e-4, atol=1e-6)
