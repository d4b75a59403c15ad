"""lrkit.rollback: the one snapshot policy, and the torch and Keras bindings of it.

The policy is checked on a binding whose "model" is a number (state is what
``capture`` copies); the laws: a rollback restores the last confirmed
snapshot (the pending one while none is confirmed) and returns its step, a
snapshot is due every ``every`` steps, files and memory give the same run.
Each framework's binding is then held to the protocol on a real model.
"""

from __future__ import annotations

import json
import pathlib
import re
import tempfile
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrkit.rollback import Binding, FileBinding, Snapshots


class Box:
    """A binding: the state is one mutable list, captured and applied as copies."""

    suffix = ".json"

    def __init__(self) -> None:
        self.state = [0]
        self.saved: list[pathlib.Path] = []

    def capture(self) -> list[int]:
        return list(self.state)

    def apply(self, data: list[int]) -> None:
        self.state[:] = data

    def save(self, data: list[int], path: pathlib.Path) -> None:
        path.write_text(json.dumps(data))
        self.saved.append(path)

    def load(self, path: pathlib.Path) -> list[int]:
        return json.loads(path.read_text())


class MemoryOnly:
    def __init__(self) -> None:
        self.state = 0

    def capture(self) -> int:
        return self.state

    def apply(self, data: int) -> None:
        self.state = data


def test_the_bindings_are_the_protocols() -> None:
    assert isinstance(Box(), FileBinding) and isinstance(Box(), Binding)
    assert isinstance(MemoryOnly(), Binding) and not isinstance(MemoryOnly(), FileBinding)


# -- the policy, step by step ------------------------------------------------------


def test_pending_good_restore_and_clear() -> None:
    box = Box()
    snaps = Snapshots(box, every=3)
    assert snaps.due(0) and snaps.due(1) and not snaps.ready  # none yet: due at any step
    snaps.take(1)
    assert snaps.pending.step == 1 and snaps.good is None and not snaps.due(3)  # one pending
    box.state[0] = 10
    assert snaps.restore() == 1 and box.state == [0]  # none good: the pending one
    assert snaps.pending is None and not snaps.ready  # and it is gone
    snaps.keep(2)  # taken and confirmed at once
    assert snaps.good.step == 2 and snaps.pending is None
    assert [snaps.due(t) for t in range(3, 7)] == [True, False, False, True]
    box.state[0] = 5
    snaps.take(3)
    box.state[0] = 6
    snaps.drop_pending()  # step 3's loss was never checked
    assert snaps.restore() == 2 and box.state == [0]
    box.state[0] = 7
    assert snaps.restore() == 2 and box.state == [0]  # the good one stays for the next
    snaps.confirm()  # nothing pending: nothing happens
    assert snaps.good.step == 2
    snaps.clear()
    assert not snaps.ready and snaps.due(4)
    with pytest.raises(RuntimeError, match="rollback: the guard has no snapshot to roll back to"):
        snaps.restore()
    assert repr(snaps) == "Snapshots(every=3, good=None, pending=None, in='memory')"


def test_files_hold_the_pending_and_the_good_snapshot(tmp_path: pathlib.Path) -> None:
    box = Box()
    snaps = Snapshots(box, every=1, directory=tmp_path / "guard", who="Scheduler")
    snaps.take(0)
    assert sorted(p.name for p in (tmp_path / "guard").iterdir()) == ["guard-pending.json"]
    box.state[0] = 1
    snaps.confirm()
    assert sorted(p.name for p in (tmp_path / "guard").iterdir()) == ["guard-good.json"]
    snaps.take(1)
    box.state[0] = 2
    assert snaps.restore() == 0 and box.state == [0]
    assert snaps.good.data == tmp_path / "guard" / "guard-good.json"


def test_bad_arguments_say_what_is_wrong(tmp_path: pathlib.Path) -> None:
    for every in (0, -1, 1.5, True, "10"):
        message = f"Scheduler: snapshot_every must be an integer >= 1, got {every!r}"
        with pytest.raises(ValueError, match=re.escape(message)):
            Snapshots(Box(), every, who="Scheduler")
    with pytest.raises(TypeError, match=r"a binding with suffix, save.*got MemoryOnly"):
        Snapshots(MemoryOnly(), 1, directory=tmp_path)


# -- the laws ----------------------------------------------------------------------

#: What happens at a step of a run: its loss passed, diverged, or was never checked.
OUTCOMES = st.lists(st.sampled_from(["fine", "diverged", "unchecked"]), max_size=60)


def run(outcomes: list[str], every: int, directory: Any = None) -> list[tuple]:
    """The driver's loop on a Box: due -> take, update, then confirm / restore / drop.

    Returns the trace: per step the snapshot steps and, on a rollback, the
    step returned and the state restored, next to what an independent
    reading of the events says they must be.
    """
    box = Box()
    snaps = Snapshots(box, every, directory)
    trace = []
    confirmed: list[int] = []  # steps whose snapshot was confirmed, in order
    pending: int | None = None  # the step of the snapshot awaiting its loss
    states: dict[int, int] = {}  # the state each snapshot was taken of, by its step
    for t, outcome in enumerate(outcomes):
        if snaps.due(t):
            states[t] = box.state[0]
            snaps.take(t)
            pending = t
        box.state[0] = 100 + t  # the update of step t
        if outcome == "fine":
            if pending is not None:
                confirmed.append(pending)
            pending = None
            snaps.confirm()
        elif outcome == "unchecked":
            pending = None
            snaps.drop_pending()
        elif not snaps.ready:
            assert not confirmed and pending is None
            with pytest.raises(RuntimeError):
                snaps.restore()
        else:
            want = confirmed[-1] if confirmed else pending
            back = snaps.restore()
            trace.append((t, back, want, box.state[0], states[want]))
            pending = None
        good = None if snaps.good is None else snaps.good.step
        assert good == (confirmed[-1] if confirmed else None)
    return trace


@given(OUTCOMES, st.integers(1, 7))
def test_a_rollback_restores_the_last_confirmed_snapshot_and_its_step(
    outcomes: list[str], every: int
) -> None:
    for t, back, want, state, want_state in run(outcomes, every):
        assert back == want and back <= t, (t, back, want)
        assert state == want_state


@given(st.integers(1, 7), st.integers(1, 50))
def test_with_every_loss_fine_the_good_snapshot_is_the_last_multiple_of_every(
    every: int, steps: int
) -> None:
    box = Box()
    snaps = Snapshots(box, every)
    for t in range(steps):
        if snaps.due(t):
            snaps.take(t)
        box.state[0] = 100 + t
        snaps.confirm()
        assert snaps.good is not None and snaps.good.step == t - t % every
        assert snaps.good.step <= t < snaps.good.step + every


@given(OUTCOMES, st.integers(1, 7))
def test_files_and_memory_give_the_same_run(outcomes: list[str], every: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        assert run(outcomes, every, directory) == run(outcomes, every)
        names = {p.name for p in pathlib.Path(directory).iterdir()}
        assert names <= {"guard-good.json", "guard-pending.json"}


# -- the framework bindings --------------------------------------------------------


def follows_the_protocol(binding: Any, train: Any, read: Any, directory: Any = None) -> None:
    """The binding's rollback brings back what it captured, twice, whatever ran between.

    ``train()`` changes model and optimizer state; ``read()`` is a list of
    numpy arrays of all of it.
    """
    import numpy as np

    def same(a: list, b: list) -> bool:
        return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    snaps = Snapshots(binding, every=1, directory=directory)
    before = read()
    snaps.take(0)
    train()
    snaps.confirm()
    snaps.take(1)
    train()
    assert not same(read(), before)
    assert snaps.restore() == 0 and same(read(), before)
    train()  # the restored state trains on: the snapshot must not be the live one
    train()
    assert snaps.restore() == 0 and same(read(), before)


@pytest.mark.parametrize("in_files", [False, True])
def test_the_torch_binding_follows_the_protocol(in_files: bool, tmp_path: pathlib.Path) -> None:
    import torch

    from lrkit.torch.rollback import _TorchState

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    x = torch.randn(8, 3)

    def train() -> None:
        optimizer.zero_grad()
        model(x).pow(2).sum().backward()
        optimizer.step()

    def read() -> list:
        state = [v.numpy().copy() for v in model.state_dict().values()]  # buffers included
        for per_param in optimizer.state_dict()["state"].values():
            state += [torch.as_tensor(v).numpy().copy() for v in per_param.values()]
        return state

    train()  # Adam has its moments and step
    binding = _TorchState(model, optimizer)
    assert isinstance(binding, FileBinding) and binding.suffix == ".pt"
    follows_the_protocol(binding, train, read, tmp_path if in_files else None)
    if in_files:
        assert "guard-good.pt" in {p.name for p in tmp_path.iterdir()}


def test_the_keras_binding_follows_the_protocol() -> None:
    import numpy as np

    import lrkit.keras  # before keras: picks a backend if unset

    import keras  # isort: skip

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(0.1), "mse")
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    model.train_on_batch(x, y)  # Adam has its moments
    guard = lrkit.keras.Guard()
    guard.set_model(model)
    binding = guard._snapshots.binding
    assert isinstance(binding, Binding) and not isinstance(binding, FileBinding)
    optimizer = model.optimizer
    counter = optimizer.iterations

    def train() -> None:
        model.train_on_batch(x, y)

    def read() -> list:
        state = [*model.variables, *(v for v in optimizer.variables if v is not counter)]
        return [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in state]

    follows_the_protocol(binding, train, read)
    assert int(keras.ops.convert_to_numpy(counter)) == 5  # the step counter is not rolled back
