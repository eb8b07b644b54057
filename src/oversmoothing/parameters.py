"""Allowed values of every chapter parameter, declared once and checked before any work.

A parameter keeps its meaning across chapters (``depth`` is always a number of layers L >= 1), so
the rules are keyed by name. The chapter's first code cell checks its parameters through
:func:`oversmoothing.chapter.setup_chapter`, so a plain ``papermill -p depth 0`` run fails at once
with the same one-line message that the runner gives before it starts a kernel.

Every parameter of every chapter must have a rule here (a test enforces it).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["ParameterError", "Rule", "RULES", "check", "check_all", "DEVICE_PATTERN"]

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class ParameterError(ValueError):
    """A parameter value outside what the chapter accepts (the message names both)."""


@dataclass(frozen=True)
class Rule:
    """``kind`` is int | float | bool | str | device | list; bounds apply to numbers and list items."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False        # lo < value instead of lo <= value
    hi_open: bool = False
    choices: tuple | None = None  # for str (or list items)
    item: str | None = None      # kind of a list's items
    min_len: int = 1             # lists: at least this many items (an empty grid is an error)

    def describe(self) -> str:
        k = self.item if self.kind == "list" else self.kind
        what = {"int": "an integer", "float": "a finite number", "bool": "True or False",
                "str": "a string", "device": '"auto", "cpu", "cuda" or "cuda:N"'}[k]
        if self.choices:
            what = "one of " + ", ".join(repr(c) for c in self.choices)
        bounds = []
        if self.lo is not None:
            bounds.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            bounds.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        what += (" " + " and ".join(bounds)) if bounds else ""
        if self.kind == "list":
            return f"a list of at least {self.min_len} item(s), each {what}"
        return what

    def _scalar_ok(self, kind: str, v) -> bool:
        if kind == "bool":
            return isinstance(v, bool)
        if kind in ("str", "device"):
            if not isinstance(v, str):
                return False
            if kind == "device":
                return bool(DEVICE_PATTERN.match(v))
            return self.choices is None or v in self.choices
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if kind == "int" and not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
            return False
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
            return False
        return True

    def ok(self, v) -> bool:
        if self.kind == "list":
            return (isinstance(v, (list, tuple)) and len(v) >= self.min_len
                    and all(self._scalar_ok(self.item, x) for x in v))
        return self._scalar_ok(self.kind, v)


def _int(lo=None, hi=None):
    return Rule("int", lo, hi)


def _pos():  # a finite number > 0
    return Rule("float", 0, None, lo_open=True)


def _ints(lo=None, hi=None, min_len=1):
    return Rule("list", lo, hi, item="int", min_len=min_len)


def _floats(lo=None, hi=None, lo_open=False, hi_open=False, min_len=1):
    return Rule("list", lo, hi, lo_open, hi_open, item="float", min_len=min_len)


DATASETS = ("cora", "citeseer", "chameleon", "squirrel", "chameleon_filtered", "squirrel_filtered")
ACTIVATIONS = ("softplus", "centred_softplus", "tanh", "relu", "elu")

#: One rule per parameter name, shared by every chapter that uses the name.
RULES: dict[str, Rule] = {
    # every chapter
    "seed": _int(0), "device": Rule("device"), "judge_claims": Rule("bool"),
    # graphs
    "n_nodes": _int(10), "avg_degree": _pos(), "avg_degrees": _floats(0, lo_open=True),
    "target_lambda": Rule("float", 0, 1, lo_open=True, hi_open=True),
    "lambdas": _floats(0, 1, lo_open=True, hi_open=True), "ring_nodes": _int(3), "complete_nodes": _int(2),
    "use_cora": Rule("bool"), "features": _int(1), "mean_sep": _pos(),
    "dataset": Rule("str", choices=DATASETS), "datasets": Rule("list", item="str", choices=DATASETS),
    "gat_datasets": Rule("list", item="str", choices=DATASETS),
    "sweep_datasets": Rule("list", item="str", choices=DATASETS), "split": _int(0, 9),
    # networks
    "depth": _int(1), "depths": _ints(1), "gat_depths": _ints(1), "c12_depths": _ints(1), "hidden": _int(1),
    "attention_depth": _int(1), "s": _pos(), "s_lambda": _floats(0, lo_open=True),
    "s_literal": _floats(0, lo_open=True), "activation_s": _pos(),
    "init": Rule("str", choices=("orthogonal", "gaussian", "glorot", "glorot_gain", "he")),
    "activations": Rule("list", item="str", choices=ACTIVATIONS), "lipschitz_c": _pos(),
    "c_sweep": _floats(0, lo_open=True),
    "remedies": Rule("list", item="str", choices=("gcn", "residual", "lipschitz", "jknet", "dropedge", "pairnorm",
                                                  "appnp", "gcnii")),
    # training
    "epochs": _int(1), "attention_epochs": _int(1), "lr": _pos(), "weight_decay": Rule("float", 0),
    "seeds": _ints(0), "n_seeds": _int(1), "gat_seeds": _int(1), "c12_seeds": _int(1),
    "record_every": _int(1), "attention_record_every": _int(1),
    # measurement and criteria
    "power_steps": _int(1), "fit_layers": _int(1), "rate_layers": _int(1), "smoothed_below": _pos(),
    "floor": _pos(), "near_zero": _pos(), "few_epochs": _int(0),
}


def check(name: str, value, chapter: str | None = None, rules: dict[str, Rule] | None = None):
    """``value`` if it satisfies ``name``'s rule, else a :class:`ParameterError` naming both.

    Integral floats are accepted for ints (papermill passes ``-p depth 5.0`` through YAML)."""
    rules = RULES if rules is None else rules
    where = f"chapter {chapter}: " if chapter else ""
    if name not in rules:
        raise ParameterError(f"{where}parameter {name!r} has no rule in oversmoothing.parameters.RULES")
    rule = rules[name]
    if not rule.ok(value):
        raise ParameterError(f"{where}parameter {name} = {value!r} is not accepted: expected {rule.describe()}")
    if rule.kind == "int" and isinstance(value, float):
        value = int(value)
    return value


def check_all(params: dict, chapter: str | None = None) -> dict:
    """Check every entry of ``params``; returns the (possibly int-converted) values."""
    return {k: check(k, v, chapter) for k, v in params.items()}


# chapters 01-03 (paper 1: forward and backward oversmoothing at initialisation)
# chapters 01-03 (paper 1: forward and backward oversmoothing) and 04-05
RULES.update({
    "activation": Rule("str", choices=ACTIVATIONS),   # the headline activation of the random-weight networks
    "init_s_lambda": _pos(),                          # s * lambda of every W(k) at initialisation
    "judge_from_depth": _int(1),                      # C3 is judged for L >= this only
})

# chapter 08 (paper2c): remedies compared
RULES.update({
    "dropouts": _floats(0, 1, hi_open=True),   # dropout rates tried per model; the validation set picks one
    "lipschitz_budget": _pos(),                 # c^2 L / d of the Lipschitz residual arm
    "short_epochs": _int(1),                    # a shorter training budget read off the same runs
    "mlp_depths": _ints(1),                     # depths of the plain GCN's MLP twin (P = I)
})

# chapter 06 (gradient similarity): P = I controls at initialisation
RULES.update({
    "reading_depth": _int(2),   # depth of C8's deeper reading (measured in float64)
    "train_gat": Rule("bool"),  # also train the residual GATs (slow on a CPU; the paper profile)
    "reading_dataset": Rule("str", choices=DATASETS),  # C8's second-dataset reading
})

# chapters 04-05 (paper 1: stationary traps, weight scale)
RULES.update({
    "graph_seeds": _ints(0), "offset_depths": _ints(1),
    "offsets": _floats(0, lo_open=True), "reading_lambda": Rule("float", 0, 1, lo_open=True, hi_open=True),
    "reading_avg_degree": _pos(), "long_epochs": _int(1), "extra_s": _floats(0, lo_open=True),
})

# chapter 07 (Lipschitz remedies: C10a, C10b, C11)
RULES.update({
    "small_c": _pos(), "gat_c": _floats(0, lo_open=True), "deep_seeds": _int(1), "gat_hidden": _int(1),
    "long_epochs": _int(1), "overflow_depth": _int(1), "train_overflow_depth": Rule("bool"), "widths": _ints(1),
    "n_boot": _int(0), "deep_c": _floats(0, lo_open=True),
    # the readings in the authors' own forms (soft normalisation, ml-postech/reverse-gnn's setup)
    "soft_depths": _ints(1), "authors_datasets": Rule("list", item="str", choices=DATASETS), "authors_depths": _ints(1),
    "authors_c": _floats(0, lo_open=True), "authors_seeds": _int(1), "authors_hidden": _int(1),
    "authors_epochs": _int(1), "authors_patience": _int(1),
})

# chapters 04-05: the init and optimiser readings (issue 22)
RULES.update({
    "inits": Rule("list", item="str", choices=("orthogonal", "gaussian", "glorot", "glorot_gain", "he")),
    "reading_seeds": _ints(0),   # model seeds of the init and gradient-descent readings (on the first graph)
    "gd_lrs": _floats(0, lo_open=True),  # plain gradient descent's learning-rate grid (the largest stable one is used)
    "gd_epochs": _int(1), "gd_long_epochs": _int(1),  # gradient descent's budget, and the longer one for a check
})

# chapter 09 (open questions Q1-Q5, beyond the papers)
RULES.update({
    "reading_activation": Rule("str", choices=ACTIVATIONS),   # activation of Q1's second setting
    "reading_s": _pos(),                                      # initial spectral norm s of Q1's second setting
    "sweep_ratios": _floats(0, lo_open=True, min_len=2),      # p_in/p_out of Q2's CSBM sweep (below 1: heterophilic)
    "sweep_nodes": _int(10), "sweep_avg_degree": _pos(), "sweep_mean_sep": _pos(),
    "homophilic": Rule("list", item="str", choices=DATASETS), "heterophilic": Rule("list", item="str", choices=DATASETS),
    "res_depth": _int(2), "res_hidden": _int(1), "res_epochs": _int(1), "res_lr": _pos(),   # Q2/Q3's residual GCN
    "train_real": Rule("bool"),                               # also train Q2's residual GCNs on the real graphs
    "attention_nodes": _int(10), "attention_avg_degree": _pos(),
    "attention_lambda": Rule("float", 0, 1, lo_open=True, hi_open=True),
    "trap_datasets": Rule("list", item="str", choices=DATASETS + ("pubmed",)),  # Q5 (pubmed: not in the mirror)
    "trap_epochs": _int(1),
})
