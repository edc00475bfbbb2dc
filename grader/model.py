"""The lecture's MLP: seeded initialisation, minibatches, and its forward pass as a graph of ops.

The forward pass is written once, here, as a list of single operations (``Op``). Running the
list gives every intermediate tensor of the lecture's "chunked" forward pass; re-running one
op on detached inputs lets autograd compute the local backward step of that op alone. Nothing
here knows a gradient formula: every gradient the grader uses comes from ``torch.autograd``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

CHECK_SEED = 2147483647  # the lecture's seed
PARAM_NAMES = ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")
BN_EPS = 1e-5


def init_params(vocab_size: int, block_size: int, n_embd: int, n_hidden: int, generator: torch.Generator):
    """The lecture's initialisation, with *every* draw from ``generator``.

    The lecture draws ``bngain`` and ``bnbias`` from torch's global generator; here they come
    from ``generator`` too, so a run is reproducible. Biases and BatchNorm parameters are small
    random numbers rather than 0 and 1, so that a wrong backward pass cannot hide behind zeros.
    """
    g = generator
    C = torch.randn((vocab_size, n_embd), generator=g)
    W1 = torch.randn((n_embd * block_size, n_hidden), generator=g) * (5 / 3) / ((n_embd * block_size) ** 0.5)
    b1 = torch.randn(n_hidden, generator=g) * 0.1
    W2 = torch.randn((n_hidden, vocab_size), generator=g) * 0.1
    b2 = torch.randn(vocab_size, generator=g) * 0.1
    bngain = torch.randn((1, n_hidden), generator=g) * 0.1 + 1.0
    bnbias = torch.randn((1, n_hidden), generator=g) * 0.1
    return dict(C=C, W1=W1, b1=b1, W2=W2, b2=b2, bngain=bngain, bnbias=bnbias)


def sample_batch(X: torch.Tensor, Y: torch.Tensor, batch_size: int, generator: torch.Generator):
    ix = torch.randint(0, X.shape[0], (batch_size,), generator=generator)
    return X[ix], Y[ix]


@dataclass(frozen=True)
class Op:
    """One line of the forward pass: ``out = fn(*inputs)``; the input names are fn's parameters."""

    out: str
    fn: Callable[..., torch.Tensor]

    @functools.cached_property
    def inputs(self) -> tuple[str, ...]:
        return tuple(inspect.signature(self.fn).parameters)


def forward_ops(n: int, Yb: torch.Tensor) -> list[Op]:
    """The lecture's forward pass, "chunkated into smaller steps that are possible to backward one at a time".

    ``n`` and ``Yb`` are constants of the graph (the batch size and the targets); ``Xb`` enters
    through ``emb`` (see ``embedding_op``).
    """
    return [
        Op("embcat", lambda emb: emb.view(emb.shape[0], -1)),  # concatenate the vectors
        # Linear layer 1
        Op("hprebn", lambda embcat, W1, b1: embcat @ W1 + b1),  # hidden layer pre-activation
        # BatchNorm layer
        Op("bnmeani", lambda hprebn: 1 / n * hprebn.sum(0, keepdim=True)),
        Op("bndiff", lambda hprebn, bnmeani: hprebn - bnmeani),
        Op("bndiff2", lambda bndiff: bndiff**2),
        Op("bnvar", lambda bndiff2: 1 / (n - 1) * (bndiff2).sum(0, keepdim=True)),  # note: Bessel's correction
        Op("bnvar_inv", lambda bnvar: (bnvar + BN_EPS) ** -0.5),
        Op("bnraw", lambda bndiff, bnvar_inv: bndiff * bnvar_inv),
        Op("hpreact", lambda bngain, bnraw, bnbias: bngain * bnraw + bnbias),
        # Non-linearity
        Op("h", lambda hpreact: torch.tanh(hpreact)),  # hidden layer
        # Linear layer 2
        Op("logits", lambda h, W2, b2: h @ W2 + b2),  # output layer
        # cross entropy loss (same as F.cross_entropy(logits, Yb))
        Op("logit_maxes", lambda logits: logits.max(1, keepdim=True).values),
        Op("norm_logits", lambda logits, logit_maxes: logits - logit_maxes),  # subtract max for numerical stability
        Op("counts", lambda norm_logits: norm_logits.exp()),
        Op("counts_sum", lambda counts: counts.sum(1, keepdims=True)),
        Op("counts_sum_inv", lambda counts_sum: counts_sum**-1),
        Op("probs", lambda counts, counts_sum_inv: counts * counts_sum_inv),
        Op("logprobs", lambda probs: probs.log()),
        Op("loss", lambda logprobs: -logprobs[range(n), Yb].mean()),
    ]


def embedding_op(Xb: torch.Tensor) -> Op:
    return Op("emb", lambda C: C[Xb])  # embed the characters into vectors


def graph(Xb: torch.Tensor, Yb: torch.Tensor) -> list[Op]:
    """All ops of the check network's forward pass, in the order the lecture writes them."""
    return [embedding_op(Xb), *forward_ops(Xb.shape[0], Yb)]


def run(ops: list[Op], values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run ``ops`` in order on ``values`` (the parameters); return every tensor by name."""
    values = dict(values)
    for op in ops:
        values[op.out] = op.fn(*(values[name] for name in op.inputs))
    return values


@dataclass
class Case:
    """A network, a batch and a real forward pass: every tensor by name, and autograd's gradients.

    ``values`` holds the parameters, ``Xb``/``Yb`` aside, and every intermediate of the forward
    pass (detached); ``grads[name]`` is d loss / d name for each of them (``grads["loss"]`` is 1).
    """

    ops: list[Op]
    Xb: torch.Tensor
    Yb: torch.Tensor
    values: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor]

    @property
    def n(self) -> int:
        return self.Xb.shape[0]

    def tensors(self, *names: str) -> tuple[torch.Tensor, ...]:
        """The tensors ``names`` of this forward pass (``"Xb"`` and ``"Yb"`` are the batch), in that order."""
        return tuple(getattr(self, name) if name in ("Xb", "Yb") else self.values[name] for name in names)

    def rerun(self, wrt: str, hold=(), until: str | None = None) -> dict[str, torch.Tensor]:
        """The forward pass again from a fresh leaf copy of ``wrt``, with autograd recording.

        Only the tensors that depend on ``wrt`` are recomputed (every other one is this case's own,
        detached); a tensor named in ``hold`` is recomputed but detached, so no gradient flows back
        through it; with ``until`` the pass stops once that tensor is made.
        """
        with torch.enable_grad():
            values = dict(self.values)
            values[wrt] = values[wrt].clone().requires_grad_()
            live = {wrt}
            for op in self.ops:
                if live.intersection(op.inputs):
                    out = op.fn(*(values[name] for name in op.inputs))
                    values[op.out] = out.detach() if op.out in hold else out
                    if op.out not in hold:
                        live.add(op.out)
                if op.out == until:
                    break
        return values

    def path_gradient(self, wrt: str, hold=()) -> torch.Tensor:
        """d loss / d ``wrt`` along only some paths: the tensors named in ``hold`` are held constant.

        ``path_gradient(wrt)`` with nothing held is ``grads[wrt]``.
        """
        values = self.rerun(wrt, hold)
        if not values["loss"].requires_grad:  # every path from wrt to the loss is held
            return torch.zeros_like(self.values[wrt])
        (grad,) = torch.autograd.grad(values["loss"], values[wrt])
        return grad


def forward_case(params: dict[str, torch.Tensor], Xb: torch.Tensor, Yb: torch.Tensor) -> Case:
    """Run the lecture's forward pass on copies of ``params`` and ask autograd for every gradient."""
    ops = graph(Xb, Yb)
    with torch.enable_grad():
        leaves = {k: p.detach().clone().requires_grad_() for k, p in params.items()}
        values = run(ops, leaves)
        names = [k for k in values if k != "loss"]
        grads = torch.autograd.grad(values["loss"], [values[k] for k in names])
    grads = dict(zip(names, grads, strict=True))
    grads["loss"] = torch.tensor(1.0)
    return Case(ops, Xb.clone(), Yb.clone(), {k: v.detach() for k, v in values.items()}, grads)


def check_case(dataset=None) -> Case:
    """The lecture's check network (n_embd 10, n_hidden 64, seed 2147483647) and its minibatch of 32."""
    from .data import load_dataset

    ds = dataset if dataset is not None else load_dataset()
    g = torch.Generator().manual_seed(CHECK_SEED)
    params = init_params(ds.vocab_size, ds.block_size, n_embd=10, n_hidden=64, generator=g)
    Xb, Yb = sample_batch(ds.Xtr, ds.Ytr, 32, generator=g)
    return forward_case(params, Xb, Yb)


def random_case(
    seed: int,
    batch_size: int = 32,
    n_embd: int = 10,
    n_hidden: int = 64,
    vocab_size: int = 27,
    block_size: int = 3,
    X: torch.Tensor | None = None,
    Y: torch.Tensor | None = None,
    max_logit: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> Case:
    """A fresh network of any size and a batch for it, from ``seed``: for hidden tests on new shapes.

    The batch is drawn from ``X``/``Y`` (a real data split) when given, else uniformly from the
    vocabulary. Either way every tensor comes from one real forward pass, so they belong together.
    ``max_logit`` scales the output layer (``W2`` and ``b2``) so that the largest ``|logit|`` of the
    batch is that number; ``dtype`` is the network's floating-point type (drawn in float32, then cast).
    """
    g = torch.Generator().manual_seed(seed)
    params = init_params(vocab_size, block_size, n_embd, n_hidden, generator=g)
    if X is not None:
        Xb, Yb = sample_batch(X, Y, batch_size, generator=g)
    else:
        Xb = torch.randint(0, vocab_size, (batch_size, block_size), generator=g)
        Yb = torch.randint(0, vocab_size, (batch_size,), generator=g)
    params = {k: p.to(dtype) for k, p in params.items()}
    if max_logit is not None:
        scale = max_logit / forward_case(params, Xb, Yb).values["logits"].abs().max()
        params["W2"], params["b2"] = params["W2"] * scale, params["b2"] * scale
    return forward_case(params, Xb, Yb)


# Exercise 1's 26 tensors by stage, in the lecture's order: each tensor comes after every tensor it flows into.
STAGES = {
    "cross-entropy": (
        "logprobs",
        "probs",
        "counts_sum_inv",
        "counts_sum",
        "counts",
        "norm_logits",
        "logit_maxes",
        "logits",
    ),
    "second linear layer": ("h", "W2", "b2"),
    "tanh": ("hpreact",),
    "batchnorm": ("bngain", "bnbias", "bnraw", "bnvar_inv", "bnvar", "bndiff2", "bndiff", "bnmeani", "hprebn"),
    "first linear layer": ("embcat", "W1", "b1"),
    "embedding": ("emb", "C"),
}
ORDER = tuple(name for names in STAGES.values() for name in names)
