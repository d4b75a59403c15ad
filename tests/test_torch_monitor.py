"""lrkit.torch.Monitor: what it records is what the optimizer did, measured independently."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

import lrkit
from lrkit.torch import Monitor, Scheduler


def _setup(opt_name: str = "sgd", seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
    groups = [
        {"params": model[0].parameters()},
        {"params": model[2].parameters(), "lr": 0.02},
    ]
    if opt_name == "sgd":
        opt = torch.optim.SGD(groups, lr=0.05, momentum=0.9)
    else:
        opt = torch.optim.AdamW(groups, lr=0.01, betas=(0.85, 0.99))
    x = torch.randn(64, 6)
    y = (x[:, :1] * 2 - x[:, 1:2]).tanh()
    return model, opt, x, y


def _loss(model, x, y):
    return ((model(x) - y) ** 2).mean()


@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_records_what_each_update_used(opt_name):
    """lr, momentum, loss, grad norm and per-group update ratio of every update, checked by hand."""
    model, opt, x, y = _setup(opt_name)
    sched = Scheduler(opt, "warmup(cosine(steps=30), steps=5)")
    monitor = Monitor(opt, model, live=False)
    expected = []
    for _ in range(30):
        loss = _loss(model, x, y)
        opt.zero_grad()
        loss.backward()
        grad_norm = float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]))
        lrs = [g["lr"] for g in opt.param_groups]
        moms = [g["momentum"] if "momentum" in g else g["betas"][0] for g in opt.param_groups]
        before = [[p.detach().clone() for p in g["params"]] for g in opt.param_groups]
        opt.step()
        ratios = []
        for g, b in zip(opt.param_groups, before, strict=True):
            pairs = zip(g["params"], b, strict=True)
            change = math.sqrt(sum(float((p.detach() - q).pow(2).sum()) for p, q in pairs))
            norm = math.sqrt(sum(float(q.pow(2).sum()) for q in b))
            ratios.append(change / norm)
        sched.step()  # the scheduler moves the groups' lr on before the monitor sees the step
        opt.zero_grad(set_to_none=True)  # ... and the gradients are gone: measured at the update
        monitor.step(loss)
        expected.append((float(loss), lrs, moms, grad_norm, ratios))
    record = monitor.record
    assert record.tags == sorted(
        ["loss", "grad_norm"]
        + [f"{n}/group{i}" for n in ("lr", "momentum", "update_ratio") for i in (0, 1)]
    )
    for i in range(2):
        assert record.series(f"lr/group{i}")[1].tolist() == pytest.approx(
            [e[1][i] for e in expected], rel=1e-12
        )
        assert record.series(f"momentum/group{i}")[1].tolist() == [e[2][i] for e in expected]
        assert record.series(f"update_ratio/group{i}")[1].tolist() == pytest.approx(
            [e[4][i] for e in expected], rel=1e-4
        )
    assert record.series("loss")[1].tolist() == pytest.approx([e[0] for e in expected], rel=1e-6)
    assert record.series("grad_norm")[1].tolist() == pytest.approx(
        [e[3] for e in expected], rel=1e-5
    )
    assert record.series("loss")[0].tolist() == list(range(30))
    assert record.series("lr/group0")[1][0] == 0.0  # warmup's first update
    monitor.close()


def test_every_n_measures_only_those_updates_and_no_model_means_no_ratios():
    model, opt, x, y = _setup()
    monitor = Monitor(opt, every=10, live=False)
    for step in range(35):
        loss = _loss(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        for g in opt.param_groups:
            g["lr"] *= 0.9
        monitor.step(loss)
        if step == 0:
            first_loss = float(loss)
    record = monitor.record
    assert record.tags == ["loss", "lr/group0", "lr/group1", "momentum/group0", "momentum/group1"]
    assert record.series("loss")[0].tolist() == [0, 10, 20, 30]
    assert record.series("loss")[1][0] == pytest.approx(first_loss)
    assert record.series("lr/group0")[1].tolist() == pytest.approx(
        [0.05 * 0.9**k for k in (0, 10, 20, 30)]
    )
    monitor.close()


def test_losses_between_updates_average_into_the_next_update():
    """Gradient accumulation: two losses per update, the update's loss is their mean."""
    model, opt, x, y = _setup()
    monitor = Monitor(opt, model, live=False)
    means = []
    for _ in range(5):
        opt.zero_grad()
        halves = []
        for part in (slice(0, 32), slice(32, 64)):
            loss = _loss(model, x[part], y[part])
            (loss / 2).backward()
            monitor.step(loss)  # before the update: it waits
            halves.append(float(loss))
        opt.step()
        monitor.step()
        means.append(sum(halves) / 2)
    assert monitor.record.series("loss")[1].tolist() == pytest.approx(means)
    assert monitor.record.series("loss")[0].tolist() == [0, 1, 2, 3, 4]
    monitor.close()


def test_close_removes_the_hooks_and_is_idempotent():
    model, opt, x, y = _setup()
    monitor = Monitor(opt, model, live=False)
    loss = _loss(model, x, y)
    loss.backward()
    opt.step()
    monitor.step(loss)
    first = monitor.close()
    assert monitor.close() is first
    opt.step()  # no hook left
    assert len(monitor.record) == 1
    with pytest.raises(RuntimeError, match="after close"):
        monitor.recorder.add(5, {"loss": 1.0})


def test_bad_arguments_say_what_is_wrong():
    model, opt, _, _ = _setup()
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        Monitor(model)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        Monitor(opt, model=opt)
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        Monitor(opt, every=0)
    with pytest.raises(TypeError, match="Scheduler with a guard"):
        Monitor(opt, controller=Scheduler(opt, "constant()"))
    with pytest.raises(TypeError, match="not a sink"):
        Monitor(opt, sinks=["run.csv"])


def _blow_up(steps=300, jump=150, factor=40.0):
    """SGD whose lr jumps x``factor`` at ``jump``: the monitor, and the step it first warned."""
    model, opt, x, y = _setup()
    spec = f"join(constant(lr=0.05), constant(lr={0.05 * factor}), boundaries=[{jump}])"
    with pytest.warns(UserWarning, match="the schedule's lr is the one used"):
        sched = Scheduler(opt, spec)
    monitor = Monitor(opt, model)
    warned_at = None
    for step in range(steps):
        loss = _loss(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        monitor.step(loss)
        if warned_at is None and monitor.recorder.first_bad is not None:
            warned_at = step
        if not math.isfinite(loss.item()):
            break
    return monitor, warned_at


def test_live_warning_once_soon_after_the_lr_blows_up(caplog):
    caplog.set_level(logging.WARNING, logger="lrkit.monitor")
    monitor, warned_at = _blow_up()
    warnings = [r for r in caplog.records if r.name == "lrkit.monitor"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "too high" in warnings[0].getMessage()
    losses = monitor.record.series("loss")[1]
    went_bad = next(t for t in range(150, len(losses)) if losses[t] > losses[0])
    assert warned_at is not None and went_bad <= warned_at <= went_bad + 0.05 * 300
    assert monitor.close().verdict == "too_high"


def test_hands_a_too_high_verdict_to_the_guard():
    """With controller=, the live verdict cuts the lr by the guard's factor (weights kept)."""
    model, opt, x, y = _setup()
    sched = Scheduler(opt, "constant()", guard=lrkit.Guard(factor=0.25), model=model)
    monitor = Monitor(opt, model, controller=sched)
    base = [g["lr"] for g in opt.param_groups]
    for step in range(60):
        loss = _loss(model, x, y) if step < 40 else torch.tensor(float("nan"))
        opt.zero_grad()
        if step < 40:
            loss.backward()
        opt.step()
        sched.step()
        monitor.step(loss)
    assert monitor.recorder.first_bad is not None
    assert monitor.recorder.first_bad.step == 40
    assert sched.guard.rollbacks == 1
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([b * 0.25 for b in base])
    monitor.close()


@pytest.mark.parametrize(("opt_name", "copies"), [("sgd", 1.0), ("adamw", 2.0)])
def test_the_summary_measures_the_optimizer_state(opt_name, copies):
    """SGD with momentum keeps one copy of the weights, AdamW two (plus 4-byte step counters)."""
    model, opt, x, y = _setup(opt_name)

    class Keep:
        def write(self, step, scalars):
            pass

        def close(self, summary=None):
            self.summary = summary

    sink = Keep()
    monitor = Monitor(opt, model, sinks=[sink])
    for _ in range(3):
        loss = _loss(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        monitor.step(loss)
    monitor.close()
    assert sink.summary["optimizer_state_copies"] == pytest.approx(copies, abs=0.05)
    assert sink.summary["updates"] == 3
    assert sink.summary["verdict"] == "ok"


def test_a_closure_step_is_measured_with_its_own_gradients():
    """LBFGS (and Lightning) run backward inside optimizer.step(closure): the norm is that one's."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=1, history_size=3)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    monitor = Monitor(opt, model, live=False)
    norms = []
    for _ in range(4):

        def closure():
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            return loss

        loss = opt.step(closure)
        norms.append(float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])))
        monitor.step(loss)
    assert monitor.record.series("grad_norm")[1].tolist() == pytest.approx(norms, rel=1e-6)
    monitor.close()


def test_the_docs_example_runs_and_prints_what_the_page_says(tmp_path, monkeypatch, capsys):
    import os
    import pathlib
    import re

    monkeypatch.chdir(tmp_path)
    page = pathlib.Path(__file__).resolve().parents[1] / "docs" / "monitor.md"
    text = page.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], str(page), "exec"), {"__name__": "docs_example"})
    printed = capsys.readouterr().out
    shown = text.split("prints\n\n```text\n", 1)[1].split("```", 1)[0]
    assert printed == shown
    assert os.listdir(tmp_path) == []
