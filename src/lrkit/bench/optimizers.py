"""Optimizers for ``lrkit compare``: torch.optim and learning-rate-free methods.

Each entry is an :class:`OptimizerSpec`. ``spec.create(params, lr)`` builds
the torch optimizer; ``spec.effective_lr(optimizer)`` reads the step size it
is about to use (for Prodigy and D-Adaptation ``d * lr``, their estimate of
the distance to the solution times the multiplier).

Learning-rate-free methods (``lr_free=True``) take the grid's lr as a
*multiplier* of their own default lr (``base_lr``): 1.0 for Prodigy and
D-Adaptation, 0.0025 for Schedule-Free AdamW, whose lr is not adapted.
Schedule-Free runs its own rule, a constant (``own_schedule``); Prodigy and
D-Adaptation follow the grid's schedule shape applied to their multiplier,
as their authors recommend (e.g. cosine). Their packages are imported only
when such an optimizer is created, with an error naming the ``lrfree``
extra if they are missing.

==========  ===========================================================
name        torch optimizer
==========  ===========================================================
sgd         SGD
momentum    SGD(momentum=0.9)
nesterov    SGD(momentum=0.9, nesterov=True)
adagrad     Adagrad
rmsprop     RMSprop
adam        Adam
adamw       AdamW (weight_decay=0.01)
amsgrad     Adam(amsgrad=True)
schedulefree  schedulefree.AdamWScheduleFree (lr = multiplier x 0.0025)
prodigy     prodigyopt.Prodigy (lr = multiplier)
dadapt      dadaptation.DAdaptAdam (lr = multiplier)
sam(NAME)   pytorch_optimizer.SAM around NAME (any of the above that takes
            an lr): ``sam(sgd)``, ``sam(adamw, rho=0.1)``,
            ``sam(momentum, adaptive=True)`` (ASAM)
==========  ===========================================================

SAM (sharpness-aware minimization, Foret et al. 2021; ASAM, Kwon et al.
2021) comes from the maintained ``pytorch-optimizer`` package (the
``torch`` extra). Each step takes the gradient at the weights, moves them
by ``rho`` along it (``rho`` default 0.05; ``adaptive=True`` scales the move
by the weights' magnitudes), takes the gradient there, moves back and lets
the base optimizer step with that second gradient, at the lr in the shared
param groups (the one lrkit's scheduler writes). So it needs
``opt.step(closure)``, the closure recomputing the loss and its gradient,
and costs two forward-backward passes per step: the built-in tasks pass a
closure (``OptimizerSpec.needs_closure``); ``opt.step()`` without one is a
``ValueError`` that shows how. :func:`get_optimizer` reads the ``sam(...)``
form without evaluating it and names the run by its canonical form (one
space after each comma, defaults left out), so equal settings share a run
key.

Examples:
    >>> from lrkit.bench.optimizers import OPTIMIZERS, get_optimizer
    >>> get_optimizer("prodigy").lr_free, get_optimizer("adam").lr_free
    (True, False)
    >>> get_optimizer("sam( adamw,rho=0.05 )").name, get_optimizer("sam(sgd, rho=0.1)").name
    ('sam(adamw)', 'sam(sgd, rho=0.1)')
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["OPTIMIZERS", "OptimizerSpec", "get_optimizer"]


def _package_import(optimizer: str, module: str, package: str, extra: str) -> Any:
    """Import ``module`` for ``optimizer`` or explain how to install it (with ``extra``)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"optimizer {optimizer!r} needs the {package!r} package, which is not "
            f"installed; install the extra with: pip install 'lrkit[{extra}]'"
        ) from exc


def _lrfree_import(optimizer: str, module: str, package: str) -> Any:
    """Import ``module`` for ``optimizer`` or explain how to install it."""
    return _package_import(optimizer, module, package, "lrfree")


def _sgd(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(params, lr=lr)


def _momentum(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def _nesterov(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)


def _adagrad(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adagrad(params, lr=lr)


def _rmsprop(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.RMSprop(params, lr=lr)


def _adam(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adam(params, lr=lr)


def _adamw(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)


def _amsgrad(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adam(params, lr=lr, amsgrad=True)


def _schedulefree(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    module = _lrfree_import("schedulefree", "schedulefree", "schedulefree")
    return module.AdamWScheduleFree(params, lr=lr)


def _prodigy(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    module = _lrfree_import("prodigy", "prodigyopt", "prodigyopt")
    return module.Prodigy(params, lr=lr)


def _dadapt(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    module = _lrfree_import("dadapt", "dadaptation", "dadaptation")
    return module.DAdaptAdam(params, lr=lr)


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer of the benchmark.

    Attributes:
        name: Registry name (``"adam"``).
        description: One line for listings.
        factory: ``factory(params, lr)`` -> a torch optimizer.
        lr_free: Whether the grid's lr is a multiplier of ``base_lr``.
        base_lr: The lr at multiplier 1 (LR-free methods only; 1.0 otherwise).
        own_schedule: A schedule spec the optimizer always runs, whatever the
            grid's schedule (Schedule-Free: ``"constant()"``); ``None`` when
            it follows the grid's schedule.
        uses_d: Whether its step size is ``d * lr`` with ``d`` in the param
            group (Prodigy, D-Adaptation).
        switches_mode: Whether it has ``train()`` / ``eval()`` modes that
            must be switched around evaluation (Schedule-Free).
        needs_closure: Whether ``step`` needs a closure that recomputes the
            loss and its gradient (SAM: ``opt.step(closure)``); a training
            loop passes one only then (torch's optimizers call a closure they
            are given, which would change their numbers and cost).
        base: The registered optimizer a ``sam(...)`` wraps (``None`` otherwise).
        package: The module the factory imports, if any (``pytorch_optimizer``).
    """

    name: str
    description: str
    factory: Callable[[Iterable[Any], float], torch.optim.Optimizer] = field(
        repr=False, compare=False
    )
    lr_free: bool = False
    base_lr: float = 1.0
    own_schedule: str | None = None
    uses_d: bool = False
    switches_mode: bool = False
    needs_closure: bool = False
    base: str | None = None
    package: str | None = None

    def import_package(self) -> None:
        """Import :attr:`package` now, if it is installed (a missing one is the
        factory's clear ``ImportError``, at :meth:`create`)."""
        if self.package is not None:
            with contextlib.suppress(ImportError):
                importlib.import_module(self.package)

    def group_lr(self, lr: float) -> float:
        """Return the param-group lr for a grid ``lr`` (multiplier x base_lr)."""
        return lr * self.base_lr if self.lr_free else lr

    def create(self, params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
        """Build the optimizer with param-group lr ``lr`` (already a group lr).

        Raises:
            ImportError: For an LR-free method whose package is missing.
        """
        optimizer = self.factory(params, lr)
        if self.switches_mode:
            optimizer.train()  # type: ignore[attr-defined]
        if self.needs_closure:
            optimizer.register_step_pre_hook(functools.partial(_require_closure, self.name))
        return optimizer

    def effective_lr(self, optimizer: torch.optim.Optimizer) -> float:
        """Return the step size the next ``step()`` uses (first param group).

        For Prodigy and D-Adaptation this is ``d * lr`` read before the step
        (both compute their update with the ``d`` they hold when the step
        starts); for the others it is the group's ``lr``.
        """
        group = optimizer.param_groups[0]
        lr = float(group["lr"])
        if self.uses_d:
            return float(group["d"]) * lr
        return lr

    def eval_mode(self, optimizer: torch.optim.Optimizer) -> None:
        """Switch to evaluation weights (Schedule-Free's averaged iterate)."""
        if self.switches_mode:
            optimizer.eval()  # type: ignore[attr-defined]

    def train_mode(self, optimizer: torch.optim.Optimizer) -> None:
        """Switch back to training weights after :meth:`eval_mode`."""
        if self.switches_mode:
            optimizer.train()  # type: ignore[attr-defined]


OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in (
        OptimizerSpec("sgd", "plain SGD", _sgd),
        OptimizerSpec("momentum", "SGD with heavy-ball momentum 0.9", _momentum),
        OptimizerSpec("nesterov", "SGD with Nesterov momentum 0.9", _nesterov),
        OptimizerSpec("adagrad", "Adagrad", _adagrad),
        OptimizerSpec("rmsprop", "RMSprop (alpha 0.99)", _rmsprop),
        OptimizerSpec("adam", "Adam (betas 0.9, 0.999)", _adam),
        OptimizerSpec("adamw", "AdamW, decoupled weight decay 0.01", _adamw),
        OptimizerSpec("amsgrad", "Adam with the AMSGrad max of second moments", _amsgrad),
        OptimizerSpec(
            "schedulefree",
            "Schedule-Free AdamW (lr = multiplier x 0.0025, constant)",
            _schedulefree,
            lr_free=True,
            base_lr=0.0025,
            own_schedule="constant()",
            switches_mode=True,
            package="schedulefree",
        ),
        OptimizerSpec(
            "prodigy",
            "Prodigy, distance-adaptive Adam (lr = multiplier, effective d x lr)",
            _prodigy,
            lr_free=True,
            uses_d=True,
            package="prodigyopt",
        ),
        OptimizerSpec(
            "dadapt",
            "D-Adaptation Adam (lr = multiplier, effective d x lr)",
            _dadapt,
            lr_free=True,
            uses_d=True,
            package="dadaptation",
        ),
    )
}


def get_optimizer(name: str) -> OptimizerSpec:
    """Return the registered optimizer called ``name``, or the SAM of ``sam(...)``.

    ``sam(NAME, rho=0.05, adaptive=False)`` wraps any registered optimizer
    that takes an lr; its :attr:`OptimizerSpec.name` is the canonical form
    (``sam(adamw, rho=0.1)``: one space after each comma, defaults left
    out), whatever the spacing or defaults written.

    Raises:
        ValueError: If no optimizer has that name (the message lists them),
            or a ``sam(...)`` form is malformed or has a bad value (named).

    Examples:
        >>> get_optimizer("sam(momentum, adaptive=True, rho=0.5)").name
        'sam(momentum, rho=0.5, adaptive=True)'
        >>> get_optimizer("sam(prodigy)")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: sam(prodigy): the base optimizer must take an lr; ...
    """
    try:
        return OPTIMIZERS[name]
    except (KeyError, TypeError):
        pass
    if isinstance(name, str) and "(" in name:
        return _sam_spec(*_parse_sam(name))
    raise ValueError(
        f"unknown optimizer {name!r}; known optimizers: {', '.join(OPTIMIZERS)}, "
        "and sam(NAME, rho=0.05) around any of them that takes an lr"
    ) from None


# --------------------------------------------------------------------------
# SAM: pytorch_optimizer.SAM around a registered optimizer
# --------------------------------------------------------------------------

#: ``sam(...)``'s default neighbourhood radius (the paper's and pytorch-optimizer's).
SAM_RHO = 0.05

#: The longest ``sam(...)`` form :func:`get_optimizer` reads.
_MAX_SAM_CHARS = 200

_SAM_FORM = "write e.g. sam(sgd), sam(adamw, rho=0.05) or sam(momentum, adaptive=True)"

#: How a user's loop passes the closure, shown when ``opt.step()`` has none.
_CLOSURE_EXAMPLE = """    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step(lambda: loss_fn(model(x), y).backward())"""


def _parse_sam(text: str) -> tuple[str, float, bool]:
    """``"sam(adamw, rho=0.1)"`` -> ``("adamw", 0.1, False)``: read with :mod:`ast`, never run.

    Raises:
        ValueError: Anything but ``sam(NAME[, rho=NUMBER][, adaptive=BOOL])``
            (the message names the offending part), or a bad value.
    """
    where = f"optimizer {text!r}"
    if len(text) > _MAX_SAM_CHARS:
        raise ValueError(f"{where}: too long (at most {_MAX_SAM_CHARS} characters)")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(f"{where}: not a sam(...) form; {_SAM_FORM}") from None
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name)):
        raise ValueError(f"{where}: not a sam(...) form; {_SAM_FORM}")
    if tree.func.id != "sam":
        raise ValueError(
            f"unknown optimizer {text!r}; sam(...) is the only optimizer that takes "
            f"arguments: {_SAM_FORM}"
        )
    if len(tree.args) != 1 or not isinstance(tree.args[0], ast.Name):
        got = ", ".join(ast.unparse(a) for a in tree.args) or "nothing"
        raise ValueError(
            f"{where}: sam(...) takes one base optimizer by name first, got {got}; {_SAM_FORM}"
        )
    base = tree.args[0].id
    values: dict[str, Any] = {"rho": SAM_RHO, "adaptive": False}
    given: set[str] = set()
    for kw in tree.keywords:
        if kw.arg not in values:
            shown = "**" if kw.arg is None else repr(kw.arg)
            raise ValueError(f"{where}: unknown argument {shown}; sam(...) takes rho and adaptive")
        if kw.arg in given:
            raise ValueError(f"{where}: {kw.arg} is given twice")
        given.add(kw.arg)
        node, sign = kw.value, 1
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            node, sign = node.operand, -1
        literal = node.value if isinstance(node, ast.Constant) else None
        if isinstance(literal, bool) and sign == 1:
            values[kw.arg] = literal
        elif isinstance(literal, int | float) and not isinstance(literal, bool):
            values[kw.arg] = sign * literal
        else:
            allowed = "a number" if kw.arg == "rho" else "True or False"
            raise ValueError(f"{where}: {kw.arg} must be {allowed}, got {ast.unparse(kw.value)}")
    rho, adaptive = values["rho"], values["adaptive"]
    if isinstance(rho, bool) or not isinstance(rho, int | float) or not math.isfinite(rho):
        raise ValueError(f"{where}: rho must be a finite number > 0, got {rho!r}")
    if rho <= 0:
        raise ValueError(f"{where}: rho must be a finite number > 0, got {rho!r}")
    if not isinstance(adaptive, bool):
        raise ValueError(f"{where}: adaptive must be True or False, got {adaptive!r}")
    return base, float(rho), adaptive


@functools.lru_cache(maxsize=64)
def _sam_spec(base: str, rho: float, adaptive: bool) -> OptimizerSpec:
    """The :class:`OptimizerSpec` of SAM around the registered optimizer ``base``."""
    inner = OPTIMIZERS.get(base)
    shown = f"sam({base})"
    if inner is None:
        raise ValueError(
            f"{shown}: unknown base optimizer {base!r}; known: "
            + ", ".join(n for n, o in OPTIMIZERS.items() if not o.lr_free)
        )
    if inner.lr_free:
        raise ValueError(
            f"{shown}: the base optimizer must take an lr; {base!r} sets its own (LR-free); "
            "known: " + ", ".join(n for n, o in OPTIMIZERS.items() if not o.lr_free)
        )
    args = [base]
    if rho != SAM_RHO:
        args.append(f"rho={rho!r}")
    if adaptive:
        args.append("adaptive=True")
    name = f"sam({', '.join(args)})"
    kind = "ASAM (adaptive SAM)" if adaptive else "SAM"
    return OptimizerSpec(
        name,
        f"{kind} around {base} ({inner.description}), rho {rho:g}: two gradients a step",
        functools.partial(_sam, inner.factory, rho, adaptive),
        needs_closure=True,
        base=base,
        package="pytorch_optimizer",
    )


def _sam(
    base: Callable[[Iterable[Any], float], torch.optim.Optimizer],
    rho: float,
    adaptive: bool,
    params: Iterable[Any],
    lr: float,
) -> torch.optim.Optimizer:
    module = _package_import("sam", "pytorch_optimizer", "pytorch-optimizer", "torch")
    # SAM builds its base optimizer on its own param groups and then shares them
    # (and the state) with it: the lr a scheduler writes is the one the base steps at.
    return module.SAM(
        params,
        base_optimizer=functools.partial(_base_optimizer, base),
        rho=rho,
        adaptive=adaptive,
        lr=lr,
    )


def _base_optimizer(
    factory: Callable[[Iterable[Any], float], torch.optim.Optimizer],
    param_groups: Iterable[Any],
    lr: float,
) -> torch.optim.Optimizer:
    """The registry's optimizer over SAM's param groups (what SAM calls ``base_optimizer``)."""
    return factory(param_groups, lr)


def _require_closure(name: str, optimizer: Any, args: Any, kwargs: Any) -> None:
    """A step pre-hook: ``opt.step()`` without a closure is an error that shows how."""
    closure = args[1] if len(args) > 1 else kwargs.get("closure")  # args[0] is the optimizer
    if closure is None:
        raise ValueError(
            f"{name} needs opt.step(closure): SAM takes a second gradient at perturbed "
            "weights, so after loss.backward() give step a function that recomputes the "
            f"loss on the same batch and calls backward() on it:\n{_CLOSURE_EXAMPLE}"
        )
