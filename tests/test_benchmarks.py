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
