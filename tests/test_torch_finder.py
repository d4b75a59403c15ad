"""lrkit.torch.find_lr: exact restore, exact update counts, param groups, the plot.

The restore tests compare bit for bit (``torch.equal``, RNG states as bytes):
parameters, gradients, BatchNorm buffers, Adam's moments after a real epoch,
param-group settings, and the torch, numpy and python RNGs. The strongest
check is behavioural: a 20-step fit after ``find_lr`` gives exactly the losses
of the same fit without it.
"""

from __future__ import annotations

import copy
import math
import os
import random
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lrkit import finder as F
from lrkit.torch import FinderResult, find_lr


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one intra-op thread is fastest (and immune to a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_data(n: int = 128, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x, y)


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16),
        torch.nn.BatchNorm1d(16),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(16, 2),
    )


def make_loader(own_generator: bool = False) -> DataLoader:
    g = torch.Generator().manual_seed(5) if own_generator else None
    return DataLoader(make_data(), batch_size=16, shuffle=True, generator=g)


def train(
    model: torch.nn.Module, opt: torch.optim.Optimizer, loader: Any, steps: int
) -> list[float]:
    losses: list[float] = []
    model.train()
    while len(losses) < steps:
        for x, y in loader:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if len(losses) == steps:
                break
    return losses


def snapshot(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    return {
        "params": {k: v.detach().clone() for k, v in model.named_parameters()},
        "grads": {
            k: None if v.grad is None else v.grad.clone() for k, v in model.named_parameters()
        },
        "buffers": {k: v.clone() for k, v in model.named_buffers()},
        "training": [m.training for m in model.modules()],
        "state": {
            i: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in st.items()}
            for i, st in enumerate(opt.state[p] for g in opt.param_groups for p in g["params"])
        },
        "groups": [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
        "ids": [id(p) for g in opt.param_groups for p in g["params"]],
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),
        "python_rng": random.getstate(),
    }


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    for key in ("params", "buffers"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
            assert a[key][name].dtype == b[key][name].dtype
    for name in a["grads"]:
        ga, gb = a["grads"][name], b["grads"][name]
        assert (ga is None) == (gb is None), name
        assert ga is None or torch.equal(ga, gb), name
    assert a["training"] == b["training"]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        assert a["state"][i].keys() == b["state"][i].keys()
        for k, v in a["state"][i].items():
            w = b["state"][i][k]
            assert torch.equal(v, w) if isinstance(v, torch.Tensor) else v == w, (i, k)
    assert a["groups"] == b["groups"]
    assert a["ids"] == b["ids"]
    assert torch.equal(a["torch_rng"], b["torch_rng"])
    na, nb = a["numpy_rng"], b["numpy_rng"]
    assert na[0] == nb[0] and np.array_equal(na[1], nb[1]) and na[2:] == nb[2:]
    assert a["python_rng"] == b["python_rng"]


def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(out, y)


# ---------------------------------------------------------------------------
# Exact restore
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
def test_state_is_restored_bit_for_bit(opt_name: str) -> None:
    model = make_model()
    loader = make_loader()
    if opt_name == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    train(model, opt, loader, len(loader))  # a real epoch: moments, running stats
    # leave a gradient behind and one module in eval mode: both must come back
    loss_fn(model(make_data()[:16][0]), make_data()[:16][1]).backward()
    model[3].eval()
    np.random.seed(1)
    random.seed(2)
    before = snapshot(model, opt)
    result = find_lr(model, opt, loss_fn, loader, num_steps=40)
    assert_same(before, snapshot(model, opt))
    assert isinstance(result, FinderResult) and len(result.lrs) == len(result.losses)
    assert max(result.losses) > 2 * min(result.losses)  # the sweep went far: lr 10


def test_the_sweep_stops_at_divergence_and_a_nan_makes_no_update() -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls: list[int] = []

    def step_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
        calls.append(1)
        loss = loss_fn(m(batch[0]), batch[1])
        return loss * float("nan") if len(calls) == 7 else loss

    result = find_lr(model, opt, None, make_loader(), step_fn=step_fn, num_steps=30, max_lr=1e-3)
    assert result.stopped == 6 and len(result.losses) == 7 and math.isnan(result.losses[6])
    assert result.updates == 6 and len(calls) == 7


def test_a_fresh_optimizer_looks_never_stepped_afterwards() -> None:
    """torch's schedulers mark a stepped optimizer (``_opt_called``): no trace of the sweep."""
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3)
    before = dict(vars(opt))
    find_lr(model, opt, loss_fn, make_loader(), num_steps=5, max_lr=1e-3)
    assert "_opt_called" not in vars(opt) and vars(opt).keys() == before.keys()
    assert opt.state == {} and sched.get_last_lr() == [0.1]


def test_state_is_restored_when_the_sweep_raises() -> None:
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = make_loader()
    train(model, opt, loader, 8)
    before = snapshot(model, opt)
    calls = []

    def step_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
        calls.append(1)
        if len(calls) > 5:
            raise RuntimeError("boom")
        return loss_fn(m(batch[0]), batch[1])

    with pytest.raises(RuntimeError, match="boom"):
        find_lr(model, opt, None, loader, step_fn=step_fn, num_steps=20)
    assert_same(before, snapshot(model, opt))


@pytest.mark.parametrize("own_generator", [False, True])
def test_a_fit_after_find_lr_is_the_fit_without_it(own_generator: bool) -> None:
    def fit(with_finder: bool) -> list[float]:
        model = make_model(seed=3)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        loader = make_loader(own_generator)
        torch.manual_seed(11)
        train(model, opt, loader, 5)  # Adam state and a half-read epoch order
        if with_finder:
            find_lr(model, opt, loss_fn, loader, num_steps=20, repeats=2)
        return train(model, opt, loader, 20)

    assert fit(True) == fit(False)


def test_no_files_are_left_behind(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    find_lr(model, opt, loss_fn, make_loader(), num_steps=10)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------


def test_accumulate_makes_exactly_num_steps_updates_and_groups_keep_ratios() -> None:
    model = make_model()
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.1},
            {"params": list(model[1].parameters()) + list(model[4].parameters()), "lr": 0.025},
        ],
        lr=0.1,
        momentum=0.9,
    )
    seen: list[tuple[float, float]] = []
    hook = opt.register_step_post_hook(
        lambda o, *_: seen.append((o.param_groups[0]["lr"], o.param_groups[1]["lr"]))
    )
    batches = []

    def step_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
        batches.append(1)
        return loss_fn(m(batch[0]), batch[1])

    try:
        result = find_lr(
            model,
            opt,
            None,
            make_loader(),
            step_fn=step_fn,
            num_steps=12,
            accumulate=3,
            min_lr=1e-5,
            max_lr=1e-3,
        )
    finally:
        hook.remove()
    assert len(seen) == 12 and result.updates == 12 and len(result.losses) == 12
    assert len(batches) == 36  # 8 batches per epoch: the loader was cycled
    assert np.allclose([a for a, _ in seen], F.ramp(1e-5, 1e-3, 12), rtol=1e-12)
    assert all(b == pytest.approx(a / 4, rel=1e-12) for a, b in seen)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.025]


def test_an_update_skipped_by_a_grad_scaler_records_no_point() -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    train(model, opt, make_loader(), 3)
    before = snapshot(model, opt)
    scaler_before = copy.deepcopy(vars(scaler))
    calls: list[int] = []
    stepped: list[float] = []
    hook = opt.register_step_post_hook(lambda o, *_: stepped.append(o.param_groups[0]["lr"]))

    def step_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
        calls.append(1)
        loss = loss_fn(m(batch[0]), batch[1])
        if len(calls) in (4, 5):  # a finite loss whose gradients are NaN: the scaler skips
            loss = loss + (m[0].weight * 0).abs().sqrt().sum()
        return loss

    try:
        result = find_lr(
            model,
            opt,
            None,
            make_loader(),
            step_fn=step_fn,
            num_steps=10,
            max_lr=1e-3,
            scaler=scaler,
        )
    finally:
        hook.remove()
    assert len(calls) == 12 and result.updates == 10 and len(result.losses) == 10
    assert np.allclose(stepped, F.ramp(1e-7, 1e-3, 10), rtol=1e-12)  # no lr was left out
    assert_same(before, snapshot(model, opt))
    assert vars(scaler).keys() == scaler_before.keys()
    for k, v in scaler_before.items():
        w = vars(scaler)[k]
        assert torch.equal(v, w) if isinstance(v, torch.Tensor) else v == w, k


def test_linear_mode_and_a_list_of_batches() -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = make_data()
    batches = [
        (data.tensors[0][i : i + 32], data.tensors[1][i : i + 32]) for i in range(0, 128, 32)
    ]
    result = find_lr(
        model, opt, loss_fn, batches, min_lr=1e-3, max_lr=1.0, num_steps=20, mode="linear"
    )
    assert np.allclose(np.diff(result.lrs), (1.0 - 1e-3) / 19)
    assert result.updates == 20


def test_val_loader_records_validation_losses() -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    val = DataLoader(make_data(64, seed=9), batch_size=32)
    result = find_lr(model, opt, loss_fn, make_loader(), val_loader=val, num_steps=15, max_lr=1e-3)
    assert len(result.losses) == 15 and np.isfinite(result.losses).all()
    first = find_lr(model, opt, loss_fn, make_loader(), val_loader=val, num_steps=2, max_lr=1e-6)
    assert first.losses[0] == pytest.approx(result.losses[0], rel=1e-3)


def test_repeats_report_a_spread() -> None:
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    result = find_lr(model, opt, loss_fn, make_loader(), num_steps=30, repeats=3, min_lr=1e-5)
    assert len(result.runs) == 3 and len(result.run_suggestions) == 3
    assert not all(np.array_equal(result.runs[0], r) for r in result.runs[1:])  # data orders differ
    assert result.spread >= 1.0
    assert result.updates <= 90


def test_steepest_matches_lightning_on_a_recorded_sweep() -> None:
    from lightning.pytorch.tuner.lr_finder import _LRFinder

    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = find_lr(model, opt, loss_fn, make_loader(), num_steps=60, method="steepest")
    found = _LRFinder("exponential", 1e-7, 10.0, 60)
    found.results = {"lr": result.lrs.tolist(), "loss": result.smoothed.tolist()}
    assert result.suggestion == found.suggestion()


def test_plot_writes_a_png(tmp_path: Any) -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = find_lr(model, opt, loss_fn, make_loader(), num_steps=40)
    path = tmp_path / "sub" / "lr.png"
    ax = result.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert ax.get_xscale() == "log"
    assert len(ax.get_lines()) >= 3  # raw, smoothed, the suggestion


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_steps": 1}, "num_steps must be an integer >= 2, got 1"),
        ({"accumulate": 0}, "accumulate must be an integer >= 1, got 0"),
        ({"repeats": 0}, "repeats must be an integer >= 1, got 0"),
        ({"method": "best"}, "method must be one of"),
        ({"mode": "cos"}, "mode must be 'exp' or 'linear', got 'cos'"),
        ({"max_lr": 1e-8}, "max_lr must be a finite number > min_lr"),
        ({"smooth": 1.0}, r"find_lr: smooth must be a number in \[0, 1\), got 1\.0"),
        ({"diverge": 0.5}, r"find_lr: diverge must be a number > 1, got 0\.5"),
    ],
)
def test_errors(kwargs: dict[str, Any], message: str) -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=message):
        find_lr(model, opt, loss_fn, make_loader(), **kwargs)


def test_errors_on_batches_and_losses() -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"each batch must be an \(inputs, targets\) pair"):
        find_lr(model, opt, loss_fn, [torch.zeros(4, 6)], num_steps=3)
    with pytest.raises(ValueError, match=r"the loss must be a scalar, got shape \(4,\)"):
        find_lr(model, opt, None, [torch.zeros(4, 6)], num_steps=3, step_fn=lambda m, b: m(b)[:, 0])
    with pytest.raises(TypeError, match=r"optimizer must be a torch\.optim\.Optimizer"):
        find_lr(model, "sgd", loss_fn, make_loader())  # type: ignore[arg-type]
    assert math.isclose(opt.param_groups[0]["lr"], 0.1)


def test_docs_examples_run(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import pathlib
    import re

    monkeypatch.chdir(tmp_path)
    page = pathlib.Path(__file__).resolve().parents[1] / "docs" / "finder.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert len(blocks) == 3
    for code in blocks:
        exec(compile(code, str(page), "exec"), {"__name__": "docs_example"})
    assert os.listdir(tmp_path) == []
