"""The divergence rule: when a training loss has blown up.

A loss diverges when it is NaN or infinite, or when it rises above ``spike``
times the median of the last ``window`` accepted losses. The median, not the
mean, so one bad step does not drag the reference up with it; the ratio, not a
difference, so the rule does not care about the loss's units.

The rule is pure: :meth:`DivergenceRule.update` takes a small plain-data
:class:`DivergenceState` and a loss and returns the next state plus a
:class:`Divergence` (or ``None``). Nothing is mutated, so a caller that rolls
back (``lrkit.Guard``) simply keeps the state it had, and a state round-trips
through JSON with :meth:`DivergenceState.to_dict` / :meth:`DivergenceState.from_dict`.

Rules in detail:

- NaN and +/-inf are divergences at once, even on the very first loss.
- The spike test waits until ``window`` losses have been accepted (the window's
  warm-up): early losses swing too much to be a reference.
- The spike test needs a positive median; with a median <= 0 (a loss that can
  be negative, or one that has reached exactly 0) only NaN/inf count.
- A diverging loss is never added to the window.
- With ``above_start=True`` a spike must also exceed the *starting level*:
  the median of the first ``window`` losses. Benchmarks set it: once a
  minibatch loss is near zero, 4x its median is ordinary noise (one
  misclassified sample), while a run that really blows up leaves its
  starting level behind. ``lrkit.Guard`` sets it by default too (a false
  alarm there costs a rollback and a cut lr); ``Guard(above_start=False)``
  is SPEC's plain rule.

Examples:
    >>> rule = DivergenceRule(spike=4.0, window=3)
    >>> state = rule.initial()
    >>> for loss in [1.0, 0.9, 0.8, 0.85]:
    ...     state, found = rule.update(state, loss)
    >>> found is None
    True
    >>> state, found = rule.update(state, 5.0)
    >>> found.reason, found.median
    ('spike', 0.85)
    >>> rule.update(rule.initial(), float("nan"))[1].reason
    'nan'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Divergence", "DivergenceRule", "DivergenceState"]


@dataclass(frozen=True)
class DivergenceState:
    """What the rule remembers: the last accepted losses, oldest first.

    Attributes:
        recent: Up to ``window`` finite losses, oldest first.
        seen: How many losses have been accepted in total.
        start: The median of the first ``window`` accepted losses, once
            there are that many (``None`` before).
    """

    recent: tuple[float, ...] = ()
    seen: int = 0
    start: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the state as JSON-ready plain data."""
        return {"recent": list(self.recent), "seen": self.seen, "start": self.start}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DivergenceState:
        """Rebuild a state from :meth:`to_dict`'s output.

        Raises:
            ValueError: If a field is missing or has the wrong type.
        """
        try:
            recent = tuple(float(x) for x in data["recent"])
            seen = int(data["seen"])
            start = data.get("start")
            start = None if start is None else float(start)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"divergence state must have 'recent' (list of floats), 'seen' (int) "
                f"and optionally 'start' (float or None), got {data!r}"
            ) from exc
        if seen < len(recent):
            raise ValueError(
                f"divergence state: 'seen' must be >= len(recent) = {len(recent)}, got {seen}"
            )
        return cls(recent=recent, seen=seen, start=start)


@dataclass(frozen=True)
class Divergence:
    """One detected divergence.

    Attributes:
        reason: ``"nan"``, ``"inf"`` or ``"spike"``.
        loss: The offending loss.
        median: The window's median the loss was compared with (``nan`` for
            NaN/inf found before any reference existed).
        message: A one-line human-readable explanation.
    """

    reason: str
    loss: float
    median: float
    message: str = field(default="")


@dataclass(frozen=True)
class DivergenceRule:
    """NaN/inf, or a loss above ``spike`` x the median of the last ``window``.

    Args:
        spike: How many times the running median a loss may reach; must be > 1.
        window: How many recent losses form the reference; must be >= 1. The
            spike test starts once that many losses have been accepted.
        above_start: Also require a spike to exceed the starting level (the
            median of the first ``window`` losses).

    Raises:
        ValueError: If ``spike`` or ``window`` is out of range.
    """

    spike: float = 4.0
    window: int = 20
    above_start: bool = False

    def __post_init__(self) -> None:
        spike = self.spike
        if isinstance(spike, bool) or not isinstance(spike, int | float) or not spike > 1.0:
            raise ValueError(f"divergence: spike must be a number > 1, got {spike!r}")
        if not math.isfinite(spike):
            raise ValueError(f"divergence: spike must be finite, got {spike!r}")
        window = self.window
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"divergence: window must be an integer >= 1, got {window!r}")
        if not isinstance(self.above_start, bool):
            raise ValueError(
                f"divergence: above_start must be True or False, got {self.above_start!r}"
            )

    def initial(self) -> DivergenceState:
        """Return the empty state a run starts from."""
        return DivergenceState()

    def median(self, state: DivergenceState) -> float:
        """Return the median of the state's window (``nan`` when empty)."""
        recent = sorted(state.recent[-self.window :])
        n = len(recent)
        if n == 0:
            return math.nan
        mid = n // 2
        if n % 2:
            return recent[mid]
        return 0.5 * (recent[mid - 1] + recent[mid])

    def check(self, state: DivergenceState, loss: float) -> Divergence | None:
        """Return the divergence ``loss`` would be, or ``None`` if it is fine.

        Args:
            state: The state before this loss.
            loss: The new loss (any real number; NaN and inf allowed).
        """
        loss = float(loss)
        if math.isnan(loss):
            return Divergence("nan", loss, self.median(state), "loss is NaN")
        if math.isinf(loss):
            return Divergence("inf", loss, self.median(state), f"loss is {loss}")
        if len(state.recent) < self.window:
            return None
        median = self.median(state)
        if not (median > 0.0 and loss > self.spike * median):
            return None
        if self.above_start and state.start is not None and loss <= state.start:
            return None
        return Divergence(
            "spike",
            loss,
            median,
            f"loss {loss:.6g} is above {self.spike:g} x the median {median:.6g} "
            f"of the last {self.window} losses",
        )

    def update(
        self, state: DivergenceState, loss: float
    ) -> tuple[DivergenceState, Divergence | None]:
        """Feed one loss; return the next state and the divergence, if any.

        A diverging loss leaves the state unchanged; a good one enters the
        window (the oldest falls out once it holds ``window`` losses).

        Args:
            state: The state before this loss.
            loss: The new loss.

        Returns:
            ``(next_state, None)`` for a good loss, ``(state, Divergence)``
            for a diverging one.
        """
        found = self.check(state, loss)
        if found is not None:
            return state, found
        recent = (*state.recent, float(loss))[-self.window :]
        start = state.start
        if start is None and len(recent) == self.window:
            start = self.median(DivergenceState(recent=recent))
        return DivergenceState(recent=recent, seen=state.seen + 1, start=start), None
