"""Runs raced in lockstep: paused at a step, compared, then stopped or continued.

A :class:`Race` holds *lanes*; a lane is one run of a task (a
:class:`~lrkit.bench.run.RunConfig` executed by
:func:`~lrkit.bench.run.execute`) in a thread of its own. Only one lane runs
at a time: :meth:`Race.advance` lets each live lane train until it has
logged ``target`` steps (``trial.log(step, loss=...)``), where it waits
inside ``trial.log``. The caller compares the lanes' losses, :meth:`Race.stop`
s the ones it no longer wants (they end as ``pruned`` at the step they
reached) and advances the rest. A lane that is never stopped trains to the
end: its result is an ordinary run of its config.

No task has to offer checkpoints for this: a paused lane keeps its model and
optimizer in its own thread. Interleaving does not change any lane's
numbers: when a lane pauses it saves the global random states (Python's,
numpy's, torch's CPU and, once initialised, CUDA's) and puts them back when
it resumes, so each lane draws the very numbers it would draw alone, and the
run a race keeps gives the same metric as ``execute`` of its config.

The cost is memory: each live lane holds its own model and optimizer state.

Examples:
    >>> from lrkit.bench.run import RunConfig
    >>> with Race() as race:
    ...     lanes = [race.add(RunConfig("quadratic", "momentum", "constant()", lr=lr))
    ...              for lr in (0.001, 0.01, 0.1)]
    ...     race.advance(20)
    ...     slow = max(lanes, key=lambda lane: lane.window())
    ...     race.stop(slow)
    ...     results = race.finish()
    >>> [r.status for r in results], slow.config.lr, slow.steps_spent
    (['pruned', 'ok', 'ok'], 0.001, 20)
"""

from __future__ import annotations

import math
import random
import sys
import threading
from types import TracebackType
from typing import Any

from lrkit.bench.run import RunConfig, RunResult, execute
from lrkit.bench.trial import Trial

__all__ = ["Lane", "Race"]


def _random_states() -> dict[str, Any]:
    """The global random states a task may draw from (only modules already imported)."""
    states: dict[str, Any] = {"random": random.getstate()}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        states["numpy"] = numpy.random.get_state()
    torch = sys.modules.get("torch")
    if torch is not None:
        states["torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_random_states(states: dict[str, Any]) -> None:
    random.setstate(states["random"])
    if "numpy" in states:
        sys.modules["numpy"].random.set_state(states["numpy"])
    torch = sys.modules.get("torch")
    if torch is not None:
        if "torch" in states:
            torch.set_rng_state(states["torch"])
        if "cuda" in states:
            torch.cuda.set_rng_state_all(states["cuda"])


class Lane:
    """One run of a race. Built by :meth:`Race.add`.

    Attributes:
        config: The run.
        result: Its :class:`~lrkit.bench.run.RunResult` once it ended
            (finished, diverged, failed or stopped), else ``None``.
        stopped_at: The logged steps at which the race stopped it.
        last_step: The highest step it logged a loss at (-1 before any).
        escaped: What the task raised past the run's own handling (a
            ``SystemExit``, say), re-raised in the caller's thread.
    """

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.result: RunResult | None = None
        self._record: RunResult | None = None  # what the run's trial records, while it runs
        self.stopped_at: int | None = None
        self.last_step = -1
        self.escaped: BaseException | None = None
        self._target = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self._resume = threading.Event()
        self._yielded = threading.Event()

    def __repr__(self) -> str:
        state = self.result.status if self.result is not None else f"at {self.logged}"
        return f"Lane(lr={self.config.lr:g}, {state})"

    @property
    def done(self) -> bool:
        """Whether the run has ended (its thread too, when the task escaped the run)."""
        return self.result is not None or self.escaped is not None

    @property
    def losses(self) -> list[float]:
        """Every training loss it logged, in order (the run's own record of them)."""
        return [] if self._record is None else self._record.loss

    @property
    def logged(self) -> int:
        """Training losses logged so far."""
        return len(self.losses)

    @property
    def steps_spent(self) -> int:
        """Optimizer updates the run made (while it is not done: the steps it logged at)."""
        if self.result is None:
            return max(self.logged, self.last_step + 1)
        return max(len(self.result.lr), self.result.steps_done)

    def window(self, fraction: float = 0.25) -> float:
        """The mean of the last ``fraction`` of the logged losses (at least 2 of them).

        It is inf when one of them is not finite.

        A lane that ended without finishing (diverged, failed) scores inf.
        """
        if self.result is not None and not self.result.finished:
            return math.inf
        n = self.logged
        if n == 0:
            return math.inf
        tail = self.losses[n - max(2, round(n * fraction)) :]
        if not all(math.isfinite(v) for v in tail):
            return math.inf
        return math.fsum(tail) / len(tail)

    # -- in the lane's thread ---------------------------------------------

    def _make_trial(self, *args: Any, **kwargs: Any) -> Trial:
        trial = Trial(*args, **kwargs)
        trial._on_loss = self._on_loss
        self._record = trial._result
        return trial

    def _run(self) -> None:
        try:
            self.result = execute(self.config, make_trial=self._make_trial)
        except BaseException as err:  # SystemExit from the task: execute lets it through
            self.escaped = err
        finally:
            self._yielded.set()

    def _on_loss(self, step: int, value: float) -> bool:
        self.last_step = max(self.last_step, step)
        if not self._stop and self.logged < self._target:
            return False
        if not self._stop:
            states = _random_states()
            self._resume.clear()
            self._yielded.set()
            # wait to be resumed; a stop may come from a caller that never resumes
            # (Ctrl-C while this lane was training): look at it now and then
            while not self._resume.wait(0.05) and not self._stop:
                pass
        if self._stop:
            self.stopped_at = self.logged
            return True  # trial.log raises Pruned
        _set_random_states(states)
        return False

    # -- in the caller's thread -------------------------------------------

    def _advance(self, target: int) -> None:
        if self.done:
            return
        self._target = target
        self._yielded.clear()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"lrkit-lane-lr={self.config.lr:g}", daemon=True
            )
            self._thread.start()
        else:
            self._resume.set()
        self._yielded.wait()
        if self.escaped is not None:  # as it would have in a run of its own
            raise self.escaped

    def _end(self) -> None:
        if self.done or self._thread is None:
            return
        self._stop = True
        self._yielded.clear()
        self._resume.set()
        self._yielded.wait()
        self._thread.join()


class Race:
    """Lanes run one at a time, paused at common steps; use as a context manager.

    Leaving the ``with`` block (also on an exception or Ctrl-C) stops every
    lane still paused.
    """

    def __init__(self) -> None:
        self.lanes: list[Lane] = []

    def __enter__(self) -> Race:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for lane in self.lanes:
            lane._end()

    def add(self, config: RunConfig) -> Lane:
        """A new lane for ``config``; it starts at the next :meth:`advance`."""
        lane = Lane(config)
        self.lanes.append(lane)
        return lane

    @property
    def live(self) -> list[Lane]:
        """The lanes still running (paused or not started)."""
        return [lane for lane in self.lanes if not lane.done]

    def advance(self, target: int, lanes: list[Lane] | None = None) -> None:
        """Let each live lane (of ``lanes``) train until it has logged ``target`` losses.

        A lane whose run ends before (it finished, diverged or failed) is done.
        """
        for lane in self.live if lanes is None else lanes:
            lane._advance(target)

    def stop(self, lane: Lane) -> None:
        """End a paused lane where it is (its run is stored ``pruned``)."""
        lane._end()

    def finish(self, lanes: list[Lane] | None = None) -> list[RunResult]:
        """Train the live lanes (of ``lanes``) to their end; every lane's result."""
        self.advance(sys.maxsize, lanes)
        return [lane.result for lane in self.lanes if lane.result is not None]
