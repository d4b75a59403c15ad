"""What an optimizer's state costs in memory: :func:`optimizer_state_size`.

"How much more memory does Adam need than SGD?" is answered by measuring,
not by a table: :func:`optimizer_state_size` walks the tensors the optimizer
holds and compares their bytes with the bytes of the parameters it updates.
The result is read in *copies of the weights*: plain SGD keeps nothing (0),
SGD with momentum one buffer (1), Adam two moments (2), AMSGrad three,
Prodigy four (its ``s`` and its copy ``p0`` of the starting weights beside
Adam's two moments).

What is counted:

- every tensor in ``optimizer.state`` (values of each parameter's state
  dict, and tensors nested in dicts, lists or tuples inside it), under its
  state key (``exp_avg``, ``momentum_buffer``; a nested one as
  ``key.subkey``);
- tensors an optimizer keeps in its ``param_groups`` beside ``"params"``
  (an lr kept as a tensor, say), under ``param_groups.<key>``;
- each piece of memory once: tensors are counted by the storage they live
  in (two views of one buffer are one buffer), and a tensor that is one of
  the parameters themselves is not state;
- scalar tensors too, e.g. the ``step`` counter torch's Adam keeps per
  parameter as a 4-byte tensor: negligible on a real model (4 bytes per
  parameter *tensor*), visible on a toy one of 20 weights.

Parameters are counted once each, whatever the number of groups or tied
weights, at their own dtype: a float16 model with float16 moments has the
same copies as a float32 one. Tensors an optimizer keeps elsewhere (in its
own attributes) are not seen.

The state is measured as it is *now*. torch's optimizers create most of
their state lazily, at the first ``step()`` (Adagrad's ``sum`` in its
constructor), and only for parameters that had a gradient: measure after
some updates. ``lrkit compare`` and :class:`lrkit.torch.Monitor` do.

Examples:
    >>> import torch
    >>> from lrkit.torch import optimizer_state_size
    >>> model = torch.nn.Linear(100, 100)
    >>> opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    >>> optimizer_state_size(opt).copies      # nothing before the first step
    0.0
    >>> model(torch.ones(1, 100)).sum().backward()
    >>> opt.step()
    >>> size = optimizer_state_size(opt)
    >>> round(size.copies, 2), size.per_kind["exp_avg"] == size.param_bytes
    (2.0, True)
    >>> print(size)
    2.00 copies of the weights (exp_avg 1.00, exp_avg_sq 1.00), 80.8 kB
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["StateSize", "optimizer_state_size"]


@dataclass(frozen=True)
class StateSize:
    """The optimizer state's size beside the weights it updates.

    Attributes:
        state_bytes: Bytes of every state tensor, each storage once.
        param_bytes: Bytes of the parameters of all param groups, each once.
        per_kind: ``state_bytes`` split by state key (``"exp_avg"``,
            ``"momentum_buffer"``, ``"step"``, ``"param_groups.<key>"``),
            largest first.
        tensors: How many state tensors were counted.
        params: How many distinct parameter tensors the optimizer has.
    """

    state_bytes: int
    param_bytes: int
    per_kind: dict[str, int] = field(default_factory=dict)
    tensors: int = 0
    params: int = 0

    @property
    def copies(self) -> float:
        """State bytes / parameter bytes: how many copies of the weights the state is.

        0.0 when there is no state; ``inf`` for state beside parameters of no bytes.
        """
        if self.state_bytes == 0:
            return 0.0
        return self.state_bytes / self.param_bytes if self.param_bytes else float("inf")

    def kind_copies(self) -> dict[str, float]:
        """:attr:`per_kind` in copies of the weights (``{"exp_avg": 1.0, ...}``)."""
        if not self.param_bytes:
            return {k: (0.0 if v == 0 else float("inf")) for k, v in self.per_kind.items()}
        return {k: v / self.param_bytes for k, v in self.per_kind.items()}

    def to_dict(self) -> dict[str, Any]:
        """Return the sizes as JSON-ready data, ``copies`` included."""
        return {
            "copies": self.copies,
            "state_bytes": self.state_bytes,
            "param_bytes": self.param_bytes,
            "per_kind": dict(self.per_kind),
            "tensors": self.tensors,
            "params": self.params,
        }

    def __str__(self) -> str:
        # Kinds under half a hundredth of the weights (step counters) are left out of the list.
        kinds = ", ".join(
            f"{name} {copies:.2f}" for name, copies in self.kind_copies().items() if copies >= 0.005
        )
        return (
            f"{self.copies:.2f} copies of the weights"
            + (f" ({kinds})" if kinds else "")
            + f", {format_bytes(self.state_bytes)}"
        )


def format_bytes(n: int) -> str:
    """Bytes in decimal units: ``"512 B"``, ``"80.8 kB"``, ``"1.2 MB"``, ``"3.4 GB"``.

    Examples:
        >>> format_bytes(0), format_bytes(80_800), format_bytes(1_234_567)
        ('0 B', '80.8 kB', '1.2 MB')
    """
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000.0
        if value < 999.95 or unit == "TB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _tensors(value: Any, name: str) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in ``value`` (dicts, lists and tuples walked), with its kind name."""
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _tensors(item, f"{name}.{key}")
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item, name)


def _memory(tensor: torch.Tensor) -> tuple[object, int]:
    """(identity of the memory, its bytes): the storage where there is one, else the tensor."""
    own = (id(tensor), tensor.numel() * tensor.element_size())
    if tensor.is_sparse or tensor.layout != torch.strided:
        return own
    try:
        storage = tensor.untyped_storage()
    except (RuntimeError, NotImplementedError, TypeError):  # tensor subclasses without one
        return own
    pointer = storage.data_ptr()
    if pointer == 0:  # meta tensors and empty storages share the null pointer
        return own
    return (str(tensor.device), pointer), storage.nbytes()


def optimizer_state_size(optimizer: torch.optim.Optimizer) -> StateSize:
    """Measure the optimizer's state against the parameters it updates.

    Args:
        optimizer: Any ``torch.optim.Optimizer`` (torch's own, Prodigy,
            D-Adaptation, Schedule-Free, ...).

    Returns:
        A :class:`StateSize`; ``.copies`` is the state in copies of the
        weights. It is the state as it is now: before the first ``step()``
        most optimizers have none yet.

    Examples:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.ones(1000))
        >>> opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
        >>> w.sum().backward(); opt.step()
        >>> size = optimizer_state_size(opt)
        >>> size.copies, size.per_kind, size.param_bytes
        (1.0, {'momentum_buffer': 4000}, 4000)
    """
    param_bytes = 0
    params: set[int] = set()
    param_memory: set[object] = set()
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) in params:
                continue
            params.add(id(p))
            param_bytes += p.numel() * p.element_size()
            param_memory.add(_memory(p)[0])
    found: list[tuple[str, torch.Tensor]] = []
    for state in optimizer.state.values():
        if isinstance(state, Mapping):
            for key, value in state.items():
                found.extend(_tensors(value, str(key)))
        else:
            found.extend(_tensors(state, "state"))
    for group in optimizer.param_groups:
        for key, value in group.items():
            if key != "params":
                found.extend(_tensors(value, f"param_groups.{key}"))
    seen = set(param_memory)
    per_kind: dict[str, int] = {}
    tensors = 0
    for name, tensor in found:
        memory, nbytes = _memory(tensor)
        if memory in seen:
            continue
        seen.add(memory)
        tensors += 1
        per_kind[name] = per_kind.get(name, 0) + nbytes
    ordered = dict(sorted(per_kind.items(), key=lambda item: (-item[1], item[0])))
    return StateSize(
        state_bytes=sum(ordered.values()),
        param_bytes=param_bytes,
        per_kind=ordered,
        tensors=tensors,
        params=len(params),
    )
