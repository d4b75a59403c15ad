"""lrkit.torch.memory: the optimizer state's size, measured from its tensors.

Each registry optimizer is checked against what its own source keeps per
parameter (read from the installed packages; see EXPECTED), and ``lrkit
compare`` is checked to carry the measure into results.json, the report and
the terminal table.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import lrkit
from lrkit.bench.optimizers import OPTIMIZERS
from lrkit.bench.run import RunResult
from lrkit.torch import StateSize, optimizer_state_size
from lrkit.torch.memory import format_bytes

#: Per registry optimizer: the state keys that hold one full-size tensor per
#: parameter (so copies of the weights = their number), as each optimizer's
#: own source creates them. Scalar ``step`` tensors (torch's Adam, AdamW,
#: RMSprop, Adagrad keep a 0-d float32 per parameter) come on top.
EXPECTED: dict[str, tuple[str, ...]] = {
    "sgd": (),  # torch.optim.SGD keeps momentum_buffer only when momentum != 0
    "momentum": ("momentum_buffer",),
    "nesterov": ("momentum_buffer",),
    "adagrad": ("sum",),
    "rmsprop": ("square_avg",),  # + momentum_buffer with momentum, + grad_avg when centered
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
    "amsgrad": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    # schedulefree 1.4.1, adamw_schedulefree.py step(): state['z'] = clone(p) and
    # state['exp_avg_sq'] = zeros_like(p); the iterate x is not stored (y is the param).
    "schedulefree": ("exp_avg_sq", "z"),
    # prodigyopt 1.1.2, prodigy.py step() with slice_p=1: state['s'] (zeros of the
    # flattened param), state['p0'] (a clone of the starting weights; a 0-d tensor
    # for an all-zero param), exp_avg (beta1 > 0) and exp_avg_sq; step is an int.
    "prodigy": ("exp_avg", "exp_avg_sq", "p0", "s"),
    # dadaptation 3.2, dadapt_adam.py step(): state['s'], exp_avg, exp_avg_sq; step an int.
    "dadapt": ("exp_avg", "exp_avg_sq", "s"),
}


def _model(dtype: torch.dtype = torch.float32) -> nn.Sequential:
    torch.manual_seed(0)  # default init: no all-zero tensor (Prodigy's p0 would be 0-d)
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, n: int = 1) -> None:
    dtype = next(model.parameters()).dtype
    for i in range(n):
        optimizer.zero_grad()
        x = torch.randn(4, 12, generator=torch.Generator().manual_seed(i)).to(dtype)
        model(x).pow(2).sum().backward()
        optimizer.step()


def _param_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _check(size: StateSize, kinds: tuple[str, ...], param_bytes: int, params: int) -> None:
    """Each kind is one copy of the weights; only 0-d step tensors come on top."""
    assert size.param_bytes == param_bytes
    assert size.params == params
    assert set(size.per_kind) - {"step"} == set(kinds)
    for kind in kinds:
        assert size.per_kind[kind] == param_bytes, kind
    step = size.per_kind.get("step", 0)
    assert step in (0, 4 * params)  # one float32 scalar per parameter tensor, or none
    assert size.state_bytes == len(kinds) * param_bytes + step
    assert size.copies == pytest.approx(len(kinds), abs=step / param_bytes + 1e-12)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_registry_optimizer_keeps_what_its_source_says(name: str) -> None:
    assert set(EXPECTED) == set(OPTIMIZERS)  # a new optimizer needs its expectation here
    spec = OPTIMIZERS[name]
    model = _model()
    optimizer = spec.create(model.parameters(), spec.group_lr(1e-2))
    before = optimizer_state_size(optimizer)
    # State is created at the first step; torch's Adagrad fills `sum` in its constructor.
    if name == "adagrad":
        assert before.per_kind["sum"] == _param_bytes(model)
    else:
        assert before.state_bytes == 0 and before.copies == 0.0
    _step(model, optimizer, 2)
    _check(optimizer_state_size(optimizer), EXPECTED[name], _param_bytes(model), 4)


@pytest.mark.parametrize(
    ("kwargs", "kinds"),
    [
        ({"momentum": 0.9}, ("square_avg", "momentum_buffer")),
        ({"centered": True}, ("square_avg", "grad_avg")),
        ({"momentum": 0.9, "centered": True}, ("square_avg", "momentum_buffer", "grad_avg")),
    ],
)
def test_rmsprop_momentum_and_centered_add_one_copy_each(
    kwargs: dict[str, Any], kinds: tuple[str, ...]
) -> None:
    model = _model()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, **kwargs)
    _step(model, optimizer)
    _check(optimizer_state_size(optimizer), kinds, _param_bytes(model), 4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["momentum", "adam", "amsgrad"])
def test_half_precision_weights_give_the_same_copies(dtype: torch.dtype, name: str) -> None:
    spec = OPTIMIZERS[name]
    model = _model(dtype)
    optimizer = spec.create(model.parameters(), 1e-3)
    _step(model, optimizer)
    size = optimizer_state_size(optimizer)
    numel = sum(p.numel() for p in model.parameters())
    assert size.param_bytes == 2 * numel  # two bytes an element, state at the same dtype
    _check(size, EXPECTED[name], 2 * numel, 4)


def test_a_shared_parameter_is_counted_once() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encode = nn.Linear(8, 8, bias=False)
            self.decode = nn.Linear(8, 8, bias=False)
            self.decode.weight = self.encode.weight  # tied, as embeddings and heads are

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.decode(torch.tanh(self.encode(x)))

    model = Tied()
    weight = model.encode.weight
    with warnings.catch_warnings():
        # the same tensor twice in a group: torch warns, keeps both, and has one state
        warnings.filterwarnings("ignore", message="optimizer contains a parameter group")
        optimizer = torch.optim.Adam([weight, *model.parameters()], lr=1e-3)
    assert len(optimizer.param_groups[0]["params"]) == 2
    optimizer.zero_grad()
    model(torch.randn(3, 8)).sum().backward()
    optimizer.step()
    size = optimizer_state_size(optimizer)
    _check(size, ("exp_avg", "exp_avg_sq"), 64 * 4, 1)


def test_two_param_groups_each_at_its_own_settings() -> None:
    model = _model()
    first, second = model[0], model[2]
    groups: list[dict[str, Any]] = [
        {"params": first.parameters()},
        {"params": second.parameters(), "lr": 1e-4, "amsgrad": True},
    ]
    optimizer = torch.optim.Adam(groups, lr=1e-3)
    _step(model, optimizer)
    size = optimizer_state_size(optimizer)
    total = _param_bytes(model)
    assert size.param_bytes == total and size.params == 4
    assert size.per_kind["exp_avg"] == size.per_kind["exp_avg_sq"] == total
    # AMSGrad's running max only for the second group's weights
    assert size.per_kind["max_exp_avg_sq"] == _param_bytes(second)
    expected = 2 + _param_bytes(second) / total
    assert size.copies == pytest.approx(expected, abs=size.per_kind["step"] / total + 1e-12)


def test_tensors_nested_in_the_state_and_kept_in_param_groups_are_counted() -> None:
    # LBFGS keeps lists of tensors (its history) under the first parameter's state.
    model = nn.Linear(16, 16)
    optimizer = torch.optim.LBFGS(model.parameters(), history_size=3)
    x = torch.randn(8, 16)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = model(x).pow(2).sum()
        loss.backward()
        return loss

    for _ in range(3):
        optimizer.step(closure)  # type: ignore[no-untyped-call]
    state = optimizer.state[model.weight]
    size = optimizer_state_size(optimizer)
    flat = _param_bytes(model)  # LBFGS works on the flattened weights
    assert len(state["old_dirs"]) == 3
    assert size.per_kind["old_dirs"] == size.per_kind["old_stps"] == 3 * flat
    assert size.per_kind["d"] == size.per_kind["prev_flat_grad"] == flat
    assert size.copies == pytest.approx(8.0, abs=0.05)

    # An lr and betas kept as tensors in the param group are state too.
    w = nn.Parameter(torch.randn(100))
    adam = torch.optim.Adam(
        [w], lr=torch.tensor(0.01), betas=(torch.tensor(0.9), torch.tensor(0.99))
    )
    w.sum().backward()
    adam.step()
    kinds = optimizer_state_size(adam).per_kind
    assert kinds["param_groups.lr"] == 4 and kinds["param_groups.betas"] == 8
    assert kinds["exp_avg"] == kinds["exp_avg_sq"] == 400


class _FlatMomentum(torch.optim.Optimizer):
    """Momentum SGD whose buffers are views into one flat buffer (as apex's fused optimizers).

    Its state also keeps a reference to each weight, which is not extra memory.
    """

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        params = [p for g in self.param_groups for p in g["params"]]
        if not self.state:
            flat = torch.zeros(sum(p.numel() for p in params))
            offset = 0
            for p in params:
                view = flat[offset : offset + p.numel()].view_as(p)
                self.state[p] = {"momentum_buffer": view, "weight": p}
                offset += p.numel()
        for group in self.param_groups:
            for p in group["params"]:
                buf = self.state[p]["momentum_buffer"]
                buf.mul_(0.9).add_(p.grad)
                p.add_(buf, alpha=-group["lr"])


def test_views_of_one_buffer_are_one_buffer_and_the_weights_are_not_state() -> None:
    model = _model()
    optimizer = _FlatMomentum(model.parameters(), lr=0.01)
    _step(model, optimizer)
    size = optimizer_state_size(optimizer)
    assert size.per_kind == {"momentum_buffer": _param_bytes(model)}
    assert size.tensors == 1 and size.copies == 1.0


def test_str_to_dict_and_bytes() -> None:
    model = nn.Linear(100, 100)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    assert str(optimizer_state_size(optimizer)) == "0.00 copies of the weights, 0 B"
    model(torch.ones(1, 100)).sum().backward()
    optimizer.step()
    size = optimizer_state_size(optimizer)
    assert str(size) == "2.00 copies of the weights (exp_avg 1.00, exp_avg_sq 1.00), 80.8 kB"
    data = size.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["copies"] == size.copies and data["per_kind"]["step"] == 8
    assert size.kind_copies()["exp_avg"] == 1.0
    assert [format_bytes(n) for n in (999, 1000, 1_234_567, 999_960_000, 5 * 10**12)] == [
        "999 B",
        "1.0 kB",
        "1.2 MB",
        "1.0 GB",
        "5.0 TB",
    ]


# -- lrkit compare --------------------------------------------------------------------------


def _cell(report: str, optimizer: str) -> str:
    """The optimizer-state cell (the one before the run diagnosis) of ``optimizer``'s row."""
    row = re.search(rf'<tr[^>]*><td>\d+</td><td class="l">{optimizer}</td>.*?</tr>', report)
    assert row is not None, optimizer
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0))
    return str(cells[-2])


def test_compare_records_the_state_in_results_json_the_report_and_the_table(
    tmp_path: Path,
) -> None:
    from rich.console import Console

    from lrkit.bench.report import write_report
    from lrkit.cli import _print_summary

    results = lrkit.compare(
        "quadratic",
        optimizers=["sgd", "adam"],
        schedules=["constant()"],
        lrs=[0.1],
        seeds=1,
        budget=0.1,
        workers=0,
        out=tmp_path / "out",
    )
    doc = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    runs = {run["config"]["optimizer"]: run for run in doc["runs"]}
    # quadratic trains one vector of 20 float32 (80 bytes); Adam adds a 4-byte step tensor
    assert runs["sgd"]["state_copies"] == 0.0 and runs["sgd"]["state_bytes"] == 0
    assert runs["adam"]["state_kinds"] == {"exp_avg": 80, "exp_avg_sq": 80, "step": 4}
    assert runs["adam"]["state_copies"] == pytest.approx(2.0, abs=0.05)
    summary = {row["optimizer"]: row for row in doc["summary"]["quadratic"]}
    assert summary["sgd"]["state_copies"] == 0.0
    assert summary["adam"]["state_copies"] == pytest.approx(2.05)
    assert summary["adam"]["state_bytes"] == 164

    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "optimizer state (× weights)" in report
    assert "measured from the optimizer's own tensors" in report
    assert _cell(report, "sgd") == "0.00"
    assert _cell(report, "adam") == "2.05"
    assert 'title="164 B, exp_avg 1.00, exp_avg_sq 1.00, step 0.05"' in report

    console = Console(width=100, record=True, file=io.StringIO(), highlight=False)
    _print_summary(console, results.summary)
    table = [line for line in console.export_text().splitlines() if line.strip()[:1].isdigit()]
    assert any("adam" in line and line.rstrip().endswith("2.05") for line in table)
    assert any("sgd" in line and line.rstrip().endswith("0.00") for line in table)

    # Runs stored before the measure existed load, and show a dash.
    old = []
    for run in doc["runs"]:
        data = {k: v for k, v in run.items() if not k.startswith("state_")}
        old.append(RunResult.from_dict(data))
    assert all(r.state_copies is None and r.state_kinds == {} for r in old)
    write_report(old, tmp_path / "old")
    text = (tmp_path / "old" / "report.html").read_text(encoding="utf-8")
    assert _cell(text, "adam") == "—" and _cell(text, "sgd") == "—"
