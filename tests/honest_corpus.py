"""A generated corpus of honest answers (issue 23: "An honest answer always passes").

Every variant here is a *correct* submission, written the way a real student might write it: another
index form (``range`` / ``torch.arange`` / a list / a loop), a tensor method instead of a ``torch``
function, another formula for the same derivative (tanh' = 1 - tanh**2 = 1/cosh**2 = 4 sigmoid(2x)
sigmoid(-2x)...), helper functions and lambdas, prints, asserts, ``cmp`` calls, ``%time`` and
``%%time``, comments, a float64 round trip, the code spread over two cells, a debug line with a typo
after the work is done. The grader must give each of them full marks and hold none of them.

A variant starts from the solved notebook (the release with every answer cell filled in from
source/, ``course.solved``) and changes it by:

* ``edits``: source/demo_class.toml's edit format, one ``find`` (the answer cell's whole solution)
  -> ``replace`` (the rewritten cell) per answer cell it rewrites, applied by ``course.apply_edit``;
* ``layout``: what the catalogue cannot say: ``("split", cell, line)`` moves the answer cell's lines
  from ``line`` on into a new cell right after it; ``("after", cell, text)`` adds a new cell after it.

The rewrites are rules (the summary table counts them): a rule *form* is one equivalent statement
(``find`` -> ``replace`` inside a cell), a rule *decoration* (comments, prints, ``%time``...) is a
function of the cell's text. Variants are the single forms, every decoration of every answer cell,
and seeded random compositions of both (``random.Random(SEED)``); identical notebooks are dropped.

``python tests/honest_corpus.py`` prints the summary table (variants per notebook and per rule).
"""

from __future__ import annotations

import copy
import functools
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))  # notebook_code, when run as a script

from notebook_code import RELEASE, SOURCE  # noqa: E402

from grader.cells import grade_id  # noqa: E402
from grader.instructor import course  # noqa: E402
from grader.model import ORDER  # noqa: E402

SEED = 0
EX1, EX2, EX3, EX4 = "01_atomic_backprop", "02_fused_cross_entropy", "03_fused_batchnorm", "04_full_training"
NOTEBOOKS = (EX1, EX2, EX3, EX4)
# how many random compositions Exercises 1-3 get (Exercise 1's 26 gradients leave the most room;
# Exercise 4's grading run trains: its few variants are built by ``exercise4``)
COMPOSITIONS = {EX1: 190, EX2: 45, EX3: 40}


@dataclass(frozen=True)
class Form:
    """One equivalent rewrite inside an answer cell: ``find`` (text of the solution) -> ``replace``."""

    rule: str
    find: str
    replace: str


@dataclass(frozen=True)
class Variant:
    """One honest submission of one notebook: the solved notebook, changed by ``edits`` and ``layout``."""

    id: str
    notebook: str
    rules: tuple[str, ...]
    edits: tuple[dict, ...]
    layout: tuple[tuple[str, str, object], ...] = ()

    def apply(self, nb, source_nb) -> None:
        """Change ``nb`` (a solved notebook) in place into this variant."""
        for edit in self.edits:
            course.apply_edit(nb, edit, source_nb)
        for k, (op, cell, arg) in enumerate(self.layout):
            index = next(i for i, c in enumerate(nb.cells) if grade_id(c) == cell or c.get("id") == cell)
            if op == "split":
                lines = nb.cells[index].source.split("\n")
                nb.cells[index].source = "\n".join(lines[:arg])
                text = "\n".join(lines[arg:])
            else:
                text = arg
            new = nbformat.v4.new_code_cell(text)
            new.id = f"honest-{k}-{cell}"[:64]  # deterministic and unique in the notebook
            nb.cells.insert(index + 1, new)

    def notebook_node(self):
        """The variant's notebook, as the student hands it in."""
        nb = solved(self.notebook)
        self.apply(nb, source(self.notebook))
        return nb


def source(notebook: str):
    """The source notebook (a copy: read once, nbformat validates on every read)."""
    return copy.deepcopy(_read(SOURCE / f"{notebook}.ipynb"))


def solved(notebook: str):
    """The release notebook with every answer cell filled in from the source (a fresh copy)."""
    return course.solved(_read(RELEASE / f"{notebook}.ipynb"), _read(SOURCE / f"{notebook}.ipynb"))


@functools.cache
def _read(path: Path):
    return nbformat.read(path, as_version=4)


def answer_cells(notebook: str) -> dict[str, str]:
    """Each answer cell's solved text (what a variant's ``find`` quotes), by grade id."""
    return course.solutions(source(notebook))


# ---------------------------------------------------------------------------------------------
# Exercise 1: equivalent forms of each solution line, by answer cell


def _forms(rule: str, find: str, *replacements: str) -> list[Form]:
    return [Form(rule, find, r) for r in replacements]


CROSS_ENTROPY = [
    *_forms(
        "zeros",
        "dlogprobs = torch.zeros_like(logprobs)",
        "dlogprobs = torch.zeros(logprobs.shape)",
        "dlogprobs = logprobs.new_zeros(logprobs.shape)",
        "dlogprobs = torch.full_like(logprobs, 0.0)",
        "dlogprobs = torch.zeros((n, logprobs.shape[1]))",
    ),
    *_forms(
        "index",
        "dlogprobs[range(n), Yb] = -1.0/n",
        "dlogprobs[torch.arange(n), Yb] = -1.0/n",
        "dlogprobs[list(range(n)), Yb] = -1.0/n",
        "dlogprobs[[i for i in range(n)], Yb] = -1.0/n",
        "dlogprobs[range(len(Yb)), Yb] = -1/len(Yb)",
        "dlogprobs[range(batch_size), Yb] = -1.0/batch_size",
        "dlogprobs[torch.arange(n), Yb] -= 1.0/n",
    ),
    *_forms(
        "loop",
        "dlogprobs[range(n), Yb] = -1.0/n",
        "for i in range(n):\n    dlogprobs[i, Yb[i]] = -1.0/n",
        "for i, y in enumerate(Yb):\n    dlogprobs[i, y] = -1.0/n",
    ),
    *_forms(
        "method",
        "dlogprobs[range(n), Yb] = -1.0/n",
        "dlogprobs.scatter_(1, Yb.unsqueeze(1), -1.0/n)",
        "dlogprobs.index_put_((torch.arange(n), Yb), torch.tensor(-1.0/n))",
    ),
    *_forms(
        "one-hot",
        "dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0/n",
        "dlogprobs = -F.one_hot(Yb, num_classes=logprobs.shape[1]).float() / n",
        "dlogprobs = torch.nn.functional.one_hot(Yb, logprobs.shape[1]) * (-1.0/n)",
    ),
    *_forms(
        "method",
        "dprobs = (1.0 / probs) * dlogprobs",
        "dprobs = probs.reciprocal() * dlogprobs",
        "dprobs = torch.div(dlogprobs, probs)",
        "dprobs = dlogprobs.div(probs)",
        "dprobs = torch.mul(1.0 / probs, dlogprobs)",
        "dprobs = torch.reciprocal(probs) * dlogprobs",
    ),
    *_forms(
        "derivative",
        "dprobs = (1.0 / probs) * dlogprobs",
        "dprobs = dlogprobs / probs",
        "dprobs = probs**-1 * dlogprobs",
        "dprobs = probs.pow(-1) * dlogprobs",
        "dprobs = torch.exp(-logprobs) * dlogprobs",
    ),
    *_forms(
        "method",
        "dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)",
        "dcounts_sum_inv = torch.sum(counts * dprobs, 1, keepdim=True)",
        "dcounts_sum_inv = (counts * dprobs).sum(dim=1, keepdim=True)",
        "dcounts_sum_inv = (counts * dprobs).sum(1).unsqueeze(1)",
        "dcounts_sum_inv = (counts * dprobs).sum(1).view(-1, 1)",
        "dcounts_sum_inv = (counts * dprobs).sum(1)[:, None]",
        "dcounts_sum_inv = (counts * dprobs).sum(-1, keepdims=True)",
        "dcounts_sum_inv = torch.einsum('ij,ij->i', counts, dprobs).unsqueeze(1)",
        "dcounts_sum_inv = counts.mul(dprobs).sum(1, keepdim=True)",
    ),
    *_forms(
        "loop",
        "dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)",
        "dcounts_sum_inv = torch.stack([(counts[i] * dprobs[i]).sum() for i in range(n)]).view(n, 1)",
    ),
    *_forms(
        "method",
        "dcounts = counts_sum_inv * dprobs",
        "dcounts = dprobs * counts_sum_inv",
        "dcounts = torch.mul(counts_sum_inv, dprobs)",
        "dcounts = counts_sum_inv.expand_as(dprobs) * dprobs",
        "dcounts = dprobs / counts_sum",
    ),
    *_forms(
        "derivative",
        "dcounts_sum = (-counts_sum**-2) * dcounts_sum_inv",
        "dcounts_sum = -counts_sum.pow(-2) * dcounts_sum_inv",
        "dcounts_sum = -(counts_sum_inv**2) * dcounts_sum_inv",
        "dcounts_sum = -dcounts_sum_inv / counts_sum**2",
        "dcounts_sum = -torch.reciprocal(torch.square(counts_sum)) * dcounts_sum_inv",
        "dcounts_sum = torch.neg(counts_sum**-2) * dcounts_sum_inv",
        "dcounts_sum = -1.0 / (counts_sum * counts_sum) * dcounts_sum_inv",
    ),
    *_forms(
        "broadcast",
        "dcounts += torch.ones_like(counts) * dcounts_sum",
        "dcounts += dcounts_sum",
        "dcounts = dcounts + dcounts_sum.expand_as(counts)",
        "dcounts += dcounts_sum.expand(-1, counts.shape[1])",
        "dcounts.add_(dcounts_sum)",
        "dcounts += dcounts_sum.repeat(1, counts.shape[1])",
    ),
    *_forms(
        "derivative",
        "dnorm_logits = counts * dcounts",
        "dnorm_logits = norm_logits.exp() * dcounts",
        "dnorm_logits = torch.exp(norm_logits) * dcounts",
        "dnorm_logits = dcounts * counts",
        "dnorm_logits = counts.mul(dcounts)",
    ),
    *_forms(
        "clone",
        "dlogits = dnorm_logits.clone()",
        "dlogits = torch.clone(dnorm_logits)",
        "dlogits = dnorm_logits * 1.0",
        "dlogits = dnorm_logits + 0",
        "dlogits = dnorm_logits.detach().clone()",
        "dlogits = torch.zeros_like(logits) + dnorm_logits",
    ),
    *_forms(
        "method",
        "dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)",
        "dlogit_maxes = -dnorm_logits.sum(1, keepdim=True)",
        "dlogit_maxes = torch.neg(dnorm_logits).sum(1, keepdim=True)",
        "dlogit_maxes = -torch.sum(dnorm_logits, dim=1, keepdim=True)",
        "dlogit_maxes = dnorm_logits.sum(1, keepdim=True).neg()",
    ),
    *_forms(
        "index",
        "dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes",
        "dlogits += F.one_hot(logits.argmax(1), logits.shape[1]) * dlogit_maxes",
        "dlogits += torch.nn.functional.one_hot(torch.argmax(logits, dim=1), num_classes=logits.shape[1])"
        " * dlogit_maxes",
        "dlogits += (logits == logit_maxes).float() * dlogit_maxes",
        "dlogits[range(n), logits.max(1).indices] += dlogit_maxes.view(-1)",
        "dlogits[torch.arange(n), logits.argmax(1)] += dlogit_maxes[:, 0]",
        "dlogits.scatter_add_(1, logits.argmax(1, keepdim=True), dlogit_maxes)",
    ),
    *_forms(
        "loop",
        "dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes",
        "for i in range(n):\n    dlogits[i, logits[i].argmax()] += dlogit_maxes[i, 0]",
    ),
    *_forms(
        "helper",
        "dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)",
        "rowsum = lambda x: x.sum(1, keepdim=True)\ndcounts_sum_inv = rowsum(counts * dprobs)",
        "def rowsum(x):\n    return x.sum(1, keepdim=True)\ndcounts_sum_inv = rowsum(counts * dprobs)",
    ),
]

SECOND_LINEAR = [
    *_forms(
        "method",
        "dh = dlogits @ W2.T",
        "dh = dlogits @ W2.t()",
        "dh = torch.matmul(dlogits, W2.T)",
        "dh = dlogits.mm(W2.T)",
        "dh = dlogits @ W2.transpose(0, 1)",
        "dh = torch.mm(dlogits, W2.t())",
        "dh = dlogits.matmul(W2.mT)",
        "dh = torch.einsum('ij,kj->ik', dlogits, W2)",
        "dh = (W2 @ dlogits.T).T",
    ),
    *_forms(
        "method",
        "dW2 = h.T @ dlogits",
        "dW2 = torch.matmul(h.T, dlogits)",
        "dW2 = h.t().mm(dlogits)",
        "dW2 = torch.einsum('ij,ik->jk', h, dlogits)",
        "dW2 = (dlogits.T @ h).T",
    ),
    *_forms("loop", "dW2 = h.T @ dlogits", "dW2 = sum(torch.outer(h[i], dlogits[i]) for i in range(n))"),
    *_forms(
        "method",
        "db2 = dlogits.sum(0)",
        "db2 = torch.sum(dlogits, 0)",
        "db2 = dlogits.sum(dim=0)",
        "db2 = torch.ones(n) @ dlogits",
        "db2 = dlogits.T.sum(1)",
        "db2 = dlogits.mean(0) * n",
    ),
    *_forms(
        "helper",
        "dh = dlogits @ W2.T\ndW2 = h.T @ dlogits\ndb2 = dlogits.sum(0)",
        "def linear_backward(dout, x, w):\n    return dout @ w.T, x.T @ dout, dout.sum(0)\n"
        "dh, dW2, db2 = linear_backward(dlogits, h, W2)",
        "linear_backward = lambda dout, x, w: (dout @ w.T, x.T @ dout, dout.sum(0))\n"
        "dh, dW2, db2 = linear_backward(dlogits, h, W2)",
    ),
]

TANH = [
    *_forms(
        "derivative",
        "dhpreact = (1.0 - h**2) * dh",
        "dhpreact = (1 - h*h) * dh",
        "dhpreact = (1.0 - h.pow(2)) * dh",
        "dhpreact = (1.0 - torch.square(h)) * dh",
        "dhpreact = (1 - torch.tanh(hpreact)**2) * dh",
        "dhpreact = (1 - h) * (1 + h) * dh",
        "dhpreact = dh - dh * h**2",
        "dhpreact = 1/torch.cosh(hpreact)**2 * dh",
        "dhpreact = torch.cosh(hpreact).pow(-2) * dh",
        "dhpreact = 4 * torch.sigmoid(2*hpreact) * torch.sigmoid(-2*hpreact) * dh",
        "dhpreact = 4 * torch.sigmoid(2*hpreact) * (1 - torch.sigmoid(2*hpreact)) * dh",
        "dhpreact = (1 - (2*torch.sigmoid(2*hpreact) - 1)**2) * dh",
        "dhpreact = (2 / (torch.exp(hpreact) + torch.exp(-hpreact)))**2 * dh",
        "dhpreact = 4 * torch.special.expit(2*hpreact) * torch.special.expit(-2*hpreact) * dh",
    ),
    *_forms(
        "method",
        "dhpreact = (1.0 - h**2) * dh",
        "dhpreact = dh * (1.0 - h**2)",
        "dhpreact = torch.mul(1.0 - h**2, dh)",
        "dhpreact = (1.0 - h**2).mul(dh)",
        "dhpreact = torch.sub(1, h**2) * dh",
        "dhpreact = h.pow(2).neg().add(1).mul(dh)",
    ),
    *_forms(
        "helper",
        "dhpreact = (1.0 - h**2) * dh",
        "dtanh = lambda y: 1 - y**2\ndhpreact = dtanh(h) * dh",
        "def tanh_backward(dout, y):\n    return (1 - y**2) * dout\ndhpreact = tanh_backward(dh, h)",
    ),
]

BATCHNORM = [
    *_forms(
        "method",
        "dbngain = (bnraw * dhpreact).sum(0, keepdim=True)",
        "dbngain = torch.sum(bnraw * dhpreact, 0, keepdim=True)",
        "dbngain = (bnraw * dhpreact).sum(0).view(1, -1)",
        "dbngain = (bnraw * dhpreact).sum(0)[None, :]",
        "dbngain = torch.einsum('ij,ij->j', bnraw, dhpreact).unsqueeze(0)",
        "dbngain = (dhpreact * bnraw).sum(dim=0, keepdim=True)",
    ),
    *_forms(
        "method",
        "dbnraw = bngain * dhpreact",
        "dbnraw = dhpreact * bngain",
        "dbnraw = torch.mul(bngain, dhpreact)",
        "dbnraw = bngain.expand_as(dhpreact) * dhpreact",
        "dbnraw = bngain.repeat(n, 1) * dhpreact",
    ),
    *_forms(
        "method",
        "dbnbias = dhpreact.sum(0, keepdim=True)",
        "dbnbias = torch.sum(dhpreact, dim=0, keepdim=True)",
        "dbnbias = dhpreact.sum(0).unsqueeze(0)",
        "dbnbias = torch.ones(1, n) @ dhpreact",
        "dbnbias = dhpreact.sum(0, keepdims=True)",
    ),
    *_forms(
        "derivative",
        "dbndiff = bnvar_inv * dbnraw",
        "dbndiff = dbnraw * (bnvar + 1e-5)**-0.5",
        "dbndiff = dbnraw / torch.sqrt(bnvar + 1e-5)",
        "dbndiff = dbnraw * torch.rsqrt(bnvar + 1e-5)",
        "dbndiff = dbnraw / (bnvar + 1e-5).sqrt()",
        "dbndiff = dbnraw * bnvar_inv",
    ),
    *_forms(
        "method",
        "dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)",
        "dbnvar_inv = torch.sum(bndiff * dbnraw, dim=0, keepdim=True)",
        "dbnvar_inv = (bndiff * dbnraw).sum(0).unsqueeze(0)",
        "dbnvar_inv = (dbnraw * bndiff).sum(0, keepdims=True)",
    ),
    *_forms(
        "derivative",
        "dbnvar = (-0.5*(bnvar + 1e-5)**-1.5) * dbnvar_inv",
        "dbnvar = -0.5 * (bnvar + 1e-5).pow(-1.5) * dbnvar_inv",
        "dbnvar = -0.5 * bnvar_inv**3 * dbnvar_inv",
        "dbnvar = -0.5 * torch.pow(bnvar + 1e-5, -1.5) * dbnvar_inv",
        "dbnvar = -dbnvar_inv / (2 * (bnvar + 1e-5)**1.5)",
        "dbnvar = -0.5 * torch.rsqrt(bnvar + 1e-5)**3 * dbnvar_inv",
    ),
    *_forms(
        "broadcast",
        "dbndiff2 = (1.0/(n-1))*torch.ones_like(bndiff2) * dbnvar",
        "dbndiff2 = dbnvar.expand_as(bndiff2) / (n-1)",
        "dbndiff2 = torch.ones_like(bndiff2) * dbnvar / (n - 1)",
        "dbndiff2 = dbnvar.repeat(n, 1) / (n - 1)",
        "dbndiff2 = torch.full_like(bndiff2, 1.0/(n-1)) * dbnvar",
        "dbndiff2 = 1/(batch_size-1) * torch.ones(n, bndiff2.shape[1]) * dbnvar",
    ),
    *_forms(
        "method",
        "dbndiff += (2*bndiff) * dbndiff2",
        "dbndiff = dbndiff + 2*bndiff*dbndiff2",
        "dbndiff.add_(2 * bndiff * dbndiff2)",
        "dbndiff += bndiff.mul(2) * dbndiff2",
    ),
    *_forms(
        "clone",
        "dhprebn = dbndiff.clone()",
        "dhprebn = torch.clone(dbndiff)",
        "dhprebn = dbndiff * 1.0",
        "dhprebn = dbndiff.detach().clone()",
    ),
    *_forms(
        "method",
        "dbnmeani = (-dbndiff).sum(0)",
        "dbnmeani = -dbndiff.sum(0)",
        "dbnmeani = -torch.sum(dbndiff, 0)",
        "dbnmeani = dbndiff.sum(0).neg()",
        "dbnmeani = (-dbndiff).sum(0, keepdim=True)",
    ),
    *_forms(
        "broadcast",
        "dhprebn += 1.0/n * (torch.ones_like(hprebn) * dbnmeani)",
        "dhprebn += dbnmeani / n",
        "dhprebn = dhprebn + dbnmeani.expand_as(hprebn) / n",
        "dhprebn += torch.ones_like(hprebn) * dbnmeani / n",
        "dhprebn += 1.0/n * dbnmeani.repeat(n, 1)",
    ),
    *_forms(
        "helper",
        "dbngain = (bnraw * dhpreact).sum(0, keepdim=True)",
        "colsum = lambda x: x.sum(0, keepdim=True)\ndbngain = colsum(bnraw * dhpreact)",
    ),
]

FIRST_LINEAR = [
    *_forms(
        "method",
        "dembcat = dhprebn @ W1.T",
        "dembcat = dhprebn @ W1.t()",
        "dembcat = torch.matmul(dhprebn, W1.T)",
        "dembcat = dhprebn.mm(W1.transpose(0, 1))",
        "dembcat = torch.einsum('ij,kj->ik', dhprebn, W1)",
    ),
    *_forms(
        "method",
        "dW1 = embcat.T @ dhprebn",
        "dW1 = torch.matmul(embcat.T, dhprebn)",
        "dW1 = embcat.t().mm(dhprebn)",
        "dW1 = (dhprebn.T @ embcat).T",
        "dW1 = torch.einsum('ij,ik->jk', embcat, dhprebn)",
    ),
    *_forms(
        "method",
        "db1 = dhprebn.sum(0)",
        "db1 = torch.sum(dhprebn, dim=0)",
        "db1 = dhprebn.sum(0, keepdim=True).view(-1)",
        "db1 = torch.ones(n) @ dhprebn",
    ),
    *_forms(
        "helper",
        "dembcat = dhprebn @ W1.T\ndW1 = embcat.T @ dhprebn\ndb1 = dhprebn.sum(0)",
        "def linear_backward(dout, x, w):\n    return dout @ w.T, x.T @ dout, dout.sum(0)\n"
        "dembcat, dW1, db1 = linear_backward(dhprebn, embcat, W1)",
    ),
]

DC_LOOP = (
    "dC = torch.zeros_like(C)\nfor k in range(Xb.shape[0]):\n  for j in range(Xb.shape[1]):\n"
    "    ix = Xb[k,j]\n    dC[ix] += demb[k,j]"
)
EMBEDDING = [
    *_forms(
        "method",
        "demb = dembcat.view(emb.shape)",
        "demb = dembcat.reshape(emb.shape)",
        "demb = dembcat.view_as(emb)",
        "demb = dembcat.view(n, block_size, n_embd)",
        "demb = torch.reshape(dembcat, emb.shape)",
        "demb = dembcat.unflatten(1, (block_size, n_embd))",
    ),
    *_forms(
        "index",
        DC_LOOP,
        "dC = torch.zeros_like(C)\ndC.index_add_(0, Xb.view(-1), demb.view(-1, n_embd))",
        "dC = torch.zeros_like(C).index_add(0, Xb.flatten(), demb.flatten(0, 1))",
        "dC = torch.zeros_like(C)\ndC.index_put_((Xb.view(-1),), demb.view(-1, n_embd), accumulate=True)",
        "dC = torch.zeros_like(C)\ndC.scatter_add_(0, Xb.view(-1, 1).expand(-1, n_embd), demb.view(-1, n_embd))",
        "dC = F.one_hot(Xb.view(-1), num_classes=vocab_size).float().T @ demb.view(-1, n_embd)",
    ),
    *_forms(
        "loop",
        DC_LOOP,
        "dC = torch.zeros_like(C)\nfor k in range(n):\n    for j in range(block_size):\n"
        "        dC[Xb[k, j]] += demb[k, j]",
        "dC = torch.zeros_like(C)\nfor ix, d in zip(Xb.view(-1), demb.view(-1, n_embd)):\n    dC[ix] += d",
        "dC = torch.stack([demb[Xb == i].sum(0) for i in range(vocab_size)])",
        "dC = torch.zeros_like(C)\nfor i in range(vocab_size):\n    dC[i] = demb[Xb == i].sum(0)",
    ),
    *_forms(
        "helper",
        DC_LOOP,
        "def embedding_backward(dout, idx, table):\n    out = torch.zeros_like(table)\n"
        "    out.index_add_(0, idx.view(-1), dout.view(-1, table.shape[1]))\n    return out\n"
        "dC = embedding_backward(demb, Xb, C)",
    ),
]

EX1_FORMS = {
    "answer_cross_entropy": CROSS_ENTROPY,
    "answer_second_linear_layer": SECOND_LINEAR,
    "answer_tanh": TANH,
    "answer_batchnorm": BATCHNORM,
    "answer_first_linear_layer": FIRST_LINEAR,
    "answer_embedding": EMBEDDING,
}

# ---------------------------------------------------------------------------------------------
# Exercises 2 to 4: forms of the function bodies (indented as in the answer cell)

CE_BODY = (
    "    n = logits.shape[0]\n    dlogits = F.softmax(logits, 1)\n    dlogits[range(n), Y] -= 1\n    dlogits /= n\n"
)
EX2_FORMS = [
    *_forms(
        "size",
        "    n = logits.shape[0]",
        "    n = len(logits)",
        "    n = logits.size(0)",
        "    n = Y.shape[0]",
        "    n = Y.numel()",
        "    n, _ = logits.shape",
    ),
    *_forms(
        "softmax",
        "    dlogits = F.softmax(logits, 1)",
        "    dlogits = F.softmax(logits, dim=1)",
        "    dlogits = torch.softmax(logits, dim=-1)",
        "    dlogits = logits.softmax(1)",
        "    dlogits = torch.nn.functional.softmax(logits, 1)",
        "    dlogits = torch.exp(F.log_softmax(logits, 1))",
        "    dlogits = (logits - torch.logsumexp(logits, 1, keepdim=True)).exp()",
        "    counts = (logits - logits.max(1, keepdim=True).values).exp()\n"
        "    dlogits = counts / counts.sum(1, keepdim=True)",
        "    counts = torch.exp(logits - logits.amax(dim=1, keepdim=True))\n"
        "    dlogits = counts * counts.sum(1, keepdim=True)**-1",
        "    dlogits = F.softmax(logits)",
        "    dlogits = torch.special.softmax(logits, 1)",
    ),
    *_forms(
        "index",
        "    dlogits[range(n), Y] -= 1",
        "    dlogits[torch.arange(n), Y] -= 1",
        "    dlogits[list(range(n)), Y] -= 1",
        "    dlogits[[i for i in range(n)], Y] -= 1",
        "    dlogits[range(n), Y] = dlogits[range(n), Y] - 1",
        "    dlogits -= F.one_hot(Y, num_classes=logits.shape[1])",
        "    dlogits = dlogits - F.one_hot(Y, logits.shape[1]).to(dlogits.dtype)",
        "    dlogits.scatter_add_(1, Y.view(-1, 1), -torch.ones_like(dlogits[:, :1]))",
        "    dlogits.index_put_((torch.arange(n), Y), dlogits.new_tensor(-1.0), accumulate=True)",
    ),
    *_forms("loop", "    dlogits[range(n), Y] -= 1", "    for i in range(n):\n        dlogits[i, Y[i]] -= 1"),
    *_forms(
        "scale",
        "    dlogits /= n",
        "    dlogits = dlogits / n",
        "    dlogits *= 1.0 / n",
        "    dlogits.div_(n)",
        "    dlogits = torch.div(dlogits, n)",
    ),
    *_forms(
        "one-liner",
        CE_BODY,
        "    dlogits = (F.softmax(logits, 1) - F.one_hot(Y, logits.shape[1])) / logits.shape[0]\n",
        "    p = F.softmax(logits, 1)\n"
        "    dlogits = torch.where(F.one_hot(Y, logits.shape[1]).bool(), p - 1, p) / len(Y)\n",
    ),
    *_forms(
        "helper",
        CE_BODY,
        "    def softmax_rows(x):\n        e = (x - x.max(1, keepdim=True).values).exp()\n"
        "        return e / e.sum(1, keepdim=True)\n"
        "    dlogits = softmax_rows(logits)\n    dlogits[range(len(Y)), Y] -= 1\n    dlogits /= len(Y)\n",
        "    one_hot = lambda y, k: F.one_hot(y, k).float()\n"
        "    dlogits = (F.softmax(logits, 1) - one_hot(Y, logits.shape[1])) / logits.shape[0]\n",
    ),
]

BN_LINE = "    dhprebn = bngain*bnvar_inv/n * (n*dhpreact - dhpreact.sum(0) - n/(n-1)*bnraw*(dhpreact*bnraw).sum(0))"
EX3_FORMS = [
    *_forms(
        "size",
        "    n = dhpreact.shape[0]",
        "    n = len(dhpreact)",
        "    n = dhpreact.size(0)",
        "    n = bnraw.shape[0]",
        "    n, _ = dhpreact.shape",
    ),
    *_forms(
        "method",
        BN_LINE,
        BN_LINE.replace("dhpreact.sum(0)", "torch.sum(dhpreact, dim=0)"),
        BN_LINE.replace("dhpreact.sum(0)", "dhpreact.sum(0, keepdim=True)").replace(
            "(dhpreact*bnraw).sum(0)", "(dhpreact*bnraw).sum(0, keepdim=True)"
        ),
        BN_LINE.replace("(dhpreact*bnraw).sum(0)", "torch.einsum('ij,ij->j', dhpreact, bnraw)"),
        BN_LINE.replace("dhpreact.sum(0)", "dhpreact.mean(0) * n"),
        "    dhprebn = torch.mul(bngain * bnvar_inv / n, n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw"
        " * (dhpreact * bnraw).sum(0))",
    ),
    *_forms(
        "derivative",
        BN_LINE,
        "    dhprebn = bngain * bnvar_inv * (dhpreact - dhpreact.mean(0)"
        " - bnraw * (dhpreact * bnraw).sum(0) / (n - 1))",
        "    dbnraw = bngain * dhpreact\n"
        "    dhprebn = bnvar_inv / n * (n * dbnraw - dbnraw.sum(0) - n / (n - 1) * bnraw * (dbnraw * bnraw).sum(0))",
        "    dhprebn = bngain / n * bnvar_inv * (n * dhpreact - dhpreact.sum(0, keepdim=True)"
        " - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0, keepdim=True))",
    ),
    *_forms(
        "chain",
        BN_LINE,
        # the atomic chain of Exercise 1, inside the function (bndiff recovered from bnraw)
        "    bndiff = bnraw / bnvar_inv\n    dbnraw = bngain * dhpreact\n    dbndiff = bnvar_inv * dbnraw\n"
        "    dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)\n    dbnvar = -0.5 * bnvar_inv**3 * dbnvar_inv\n"
        "    dbndiff += 2 * bndiff * dbnvar / (n - 1)\n    dhprebn = dbndiff - dbndiff.sum(0, keepdim=True) / n",
        "    bndiff = bnraw / bnvar_inv\n    dbnraw = bngain * dhpreact\n    dbndiff = bnvar_inv * dbnraw\n"
        "    dbnvar = (-0.5 * bnvar_inv**3 * (bndiff * dbnraw).sum(0, keepdim=True))\n"
        "    dbndiff = dbndiff + (2 * bndiff) * (torch.ones_like(bndiff) * dbnvar / (n - 1))\n"
        "    dhprebn = dbndiff.clone()\n    dhprebn += -dbndiff.sum(0) / n",
    ),
    *_forms(
        "helper",
        BN_LINE,
        "    colsum = lambda x: x.sum(0, keepdim=True)\n"
        "    dhprebn = bngain*bnvar_inv/n * (n*dhpreact - colsum(dhpreact) - n/(n-1)*bnraw*colsum(dhpreact*bnraw))",
        "    def centered(x):\n        return x - x.mean(0, keepdim=True)\n"
        "    dhprebn = bngain * bnvar_inv * (centered(dhpreact) - bnraw * (dhpreact * bnraw).sum(0) / (n - 1))",
    ),
]

EX4_FORMS = [
    *_forms(
        "index",
        "    dlogits[torch.arange(n), Yb] -= 1",
        "    dlogits[range(n), Yb] -= 1",
        "    dlogits -= F.one_hot(Yb, num_classes=logits.shape[1])",
    ),
    *_forms(
        "softmax",
        "    dlogits = F.softmax(logits, 1)",
        "    dlogits = logits.softmax(dim=1)",
        "    dlogits = (logits - torch.logsumexp(logits, 1, keepdim=True)).exp()",
    ),
    *_forms(
        "method",
        "    dh = dlogits @ W2.T\n    dW2 = h.T @ dlogits",
        "    dh = torch.matmul(dlogits, W2.t())\n    dW2 = h.t().mm(dlogits)",
    ),
    *_forms(
        "derivative",
        "    dhpreact = (1.0 - h**2) * dh",
        "    dhpreact = (1 - h) * (1 + h) * dh",
        "    dhpreact = (1.0 - h*h) * dh",
    ),
    *_forms(
        "derivative",
        "    dhprebn = bngain*bnvar_inv/n * (n*dhpreact - dhpreact.sum(0) - n/(n-1)*bnraw*(dhpreact*bnraw).sum(0))",
        "    dhprebn = bngain * bnvar_inv * (dhpreact - dhpreact.mean(0)"
        " - bnraw * (dhpreact * bnraw).sum(0) / (n - 1))",
    ),
    *_forms(
        "index",
        "    dC.index_add_(0, Xb.view(-1), dembcat.view(-1, C.shape[1]))",
        "    dC.index_put_((Xb.flatten(),), dembcat.view(-1, C.shape[1]), accumulate=True)",
        "    dC = F.one_hot(Xb.view(-1), num_classes=C.shape[0]).float().T @ dembcat.view(-1, C.shape[1])",
    ),
    *_forms(
        "return",
        "    return dC, dW1, db1, dW2, db2, dbngain, dbnbias",
        "    return [dC, dW1, db1, dW2, db2, dbngain, dbnbias]",
    ),
]

# the training loop (an editable cell without nbgrader metadata, named by its cell id)
TRAIN_FORMS = [
    *_forms(
        "update",
        "      p.add_(grad, alpha=-lr) # p.data += -lr * grad, in one operation",
        "      p.data += -lr * grad",
        "      p.sub_(lr * grad)",
    ),
]

# ---------------------------------------------------------------------------------------------
# Decorations: what an honest student adds around a right answer (a function of the cell's text)

ASSIGNMENT = re.compile(r"^(d\w+) (\+?=) (.+)$")  # a one-line top-level `dX = ...` / `dX += ...`
FLOAT_NAMES = set(ORDER) | {f"d{name}" for name in ORDER}  # Exercise 1's float tensors and their gradients


def defined(text: str) -> list[str]:
    """The gradients an Exercise 1 answer cell defines, from its ``# define dh, dW2, db2`` line."""
    line = next(line for line in text.split("\n") if line.startswith("# define "))
    return [name.strip() for name in line.removeprefix("# define ").split(",")]


def _statement_starts(lines: list[str]) -> list[int]:
    """Indices of the lines that start a top-level statement (not indented, not a comment or magic)."""
    return [i for i, line in enumerate(lines) if line and not line[0].isspace() and line[0] not in "#%"]


def _single_line_assignments(text: str) -> list[int]:
    lines = text.rstrip("\n").split("\n")
    starts = _statement_starts(lines)
    ends = starts[1:] + [len(lines)]
    return [i for i, end in zip(starts, ends, strict=True) if end == i + 1 and ASSIGNMENT.match(lines[i])]


def comment_lines(text: str) -> str:
    """A comment above every top-level statement, as a student explains each step to themselves."""
    lines = text.split("\n")
    starts = set(_statement_starts(lines))
    out = []
    for i, line in enumerate(lines):
        if i in starts:
            out.append("# chain rule: the local derivative times the gradient from above")
        out.append(line)
    return "\n".join(out)


def comment_trailing(text: str) -> str:
    """A trailing comment on every one-line assignment (the shape it has)."""
    lines = text.split("\n")
    for i in _single_line_assignments(text):
        lines[i] += f"  # {ASSIGNMENT.match(lines[i]).group(1)} has its tensor's shape"
    return "\n".join(lines)


def docstring(text: str) -> str:
    return '"""My backward pass for this stage."""\n' + text


def prints(text: str) -> str:
    return text + "\n" + "\n".join(f"print('{d}', tuple({d}.shape))" for d in defined(text))


def prints_fstring(text: str) -> str:
    return text + "\n" + "\n".join(f"print(f'{{{d}.shape=}}')" for d in defined(text))


def asserts(text: str) -> str:
    """An assert per gradient: its shape is its tensor's (dbnmeani: the same number of elements)."""
    checks = [
        f"assert {d}.numel() == {d[1:]}.numel()" if d == "dbnmeani" else f"assert {d}.shape == {d[1:]}.shape"
        for d in defined(text)
    ]
    finite = f"assert all(torch.isfinite(t).all() for t in [{', '.join(defined(text))}])"
    return text + "\n" + "\n".join([*checks, finite])


def cmps(text: str) -> str:
    return text + "\n" + "\n".join(f"cmp('{d[1:]}', {d}, {d[1:]})" for d in defined(text))


def time_line(text: str) -> str:
    """``%time`` in front of the first one-line assignment (IPython runs it in the notebook's namespace)."""
    lines = text.split("\n")
    first = _single_line_assignments(text)[0]
    lines[first] = "%time " + lines[first]
    return "\n".join(lines)


def time_cell(text: str) -> str:
    return "%%time\n" + text


def float64(text: str) -> str:
    """Every one-line assignment computed in float64 and cast back: ``dX = (... x.double() ...).float()``."""
    names = "|".join(sorted(FLOAT_NAMES, key=len, reverse=True))
    wide = re.compile(rf"(?<![\w.'])({names})(?![\w'])")
    lines = text.split("\n")
    for i in _single_line_assignments(text):
        target, op, value = ASSIGNMENT.match(lines[i]).groups()
        value = wide.sub(r"\1.double()", value)
        lines[i] = f"{target} {op} ({value}).float()"
    return "\n".join(lines)


def typo(text: str) -> str:
    """A debug line with a typo once the work is done: it raises AttributeError, after every answer is set."""
    return text + f"\nprint({defined(text)[-1]}.shap)"


def typo_name(text: str) -> str:
    """The same with a misspelt name: NameError."""
    return text + f"\nprint({defined(text)[-1]}_)"


# rule -> decoration of an Exercise 1 answer cell
EX1_DECORATIONS = {
    "comment": (comment_lines, comment_trailing, docstring),
    "print": (prints, prints_fstring),
    "assert": (asserts,),
    "cmp": (cmps,),
    "time-line": (time_line,),
    "time-cell": (time_cell,),
    "float64": (float64,),
    "typo": (typo, typo_name),
}
ALONE = {"float64"}  # decorations that rewrite the solution's own lines: never on top of a form


# ---------------------------------------------------------------------------------------------
# Exercises 2 to 4: decorations of a cell that defines a function


@dataclass(frozen=True)
class FunctionCell:
    """What the decorations need to know of Exercises 2-4's answer cell."""

    cell: str
    function: str
    result: str  # the name the function returns (Exercise 4: the tuple's first)
    returns: str  # its return line
    call: str  # a call of the function on the notebook's own tensors
    check: str  # a visible check a student may copy into the answer cell
    wide: str  # the lines that make the inputs float64 (after the docstring)
    narrow: str  # the return line that casts back


FUNCTION_CELLS = {
    EX2: FunctionCell(
        "answer_cross_entropy_backward",
        "cross_entropy_backward",
        "dlogits",
        "    return dlogits",
        "cross_entropy_backward(logits, Yb)",
        "cmp('logits', cross_entropy_backward(logits, Yb), logits)",
        "    dtype = logits.dtype\n    logits = logits.double()",
        "    return dlogits.to(dtype)",
    ),
    EX3: FunctionCell(
        "answer_batchnorm_backward",
        "batchnorm_backward",
        "dhprebn",
        "    return dhprebn",
        "batchnorm_backward(dhpreact, bnraw, bngain, bnvar_inv)",
        "cmp('hprebn', batchnorm_backward(dhpreact, bnraw, bngain, bnvar_inv), hprebn)",
        "    dtype = dhpreact.dtype\n"
        "    dhpreact, bnraw, bngain, bnvar_inv = (t.double() for t in (dhpreact, bnraw, bngain, bnvar_inv))",
        "    return dhprebn.to(dtype)",
    ),
    EX4: FunctionCell(
        "answer_manual_backward",
        "manual_backward",
        "dC",
        "    return dC, dW1, db1, dW2, db2, dbngain, dbnbias",
        "grader.training.check_first_batch(manual_backward)",
        "grader.training.check_first_batch(manual_backward)",
        "    dtype = C.dtype\n    logits, h, W2, bnraw, bngain, bnvar_inv, embcat, W1, C = (\n"
        "        t.double() for t in (logits, h, W2, bnraw, bngain, bnvar_inv, embcat, W1, C))",
        "    return tuple(t.to(dtype) for t in (dC, dW1, db1, dW2, db2, dbngain, dbnbias))",
    ),
}


def _after_docstring(text: str, insert: str) -> str:
    """``insert`` right after the function's docstring (its closing line ``    \"\"\"``)."""
    head, sep, tail = text.partition('    """\n')
    head2, sep2, tail2 = tail.partition('    """\n')
    return head + sep + head2 + sep2 + insert + "\n" + tail2


def fn_decorations(fc: FunctionCell, notebook: str) -> dict[str, tuple]:
    inner = notebook != EX4  # Exercise 4's function runs 5,000 times in training: nothing printed inside

    def comment(text):
        return "# my answer: derived on paper first, then written in one go\n" + text.replace(
            fc.returns, fc.returns + "  # the gradient, same shape as the input"
        )

    def doc(text):
        return text.replace('    """\n', '    """\n    (derived on paper, checked against autograd)\n', 1)

    def print_inside(text):
        return text.replace(fc.returns, f"    print('{fc.result}', tuple({fc.result}.shape))\n" + fc.returns)

    def print_after(text):
        return text + f"\nprint({fc.function})"

    def assert_inside(text):
        shape = {EX2: "logits.shape", EX3: "dhpreact.shape", EX4: "C.shape"}[notebook]
        return text.replace(fc.returns, f"    assert {fc.result}.shape == {shape}\n" + fc.returns)

    def cmp_after(text):
        return text + "\n" + fc.check

    def fused_check(text):
        name = {EX2: "logits", EX3: "hprebn"}[notebook]
        return text + f"\ngrader.fused.check('{name}', {fc.function}, seed=11, batch_size=3)"

    def time_after(text):
        return text + ("\n%time " + (f"out = {fc.call}" if inner else fc.call))

    def typo_after(text):
        return text + (f"\nprint({fc.call}.shap)" if inner else f"\nprint({fc.function}.shap)")

    def wide(text):
        return _after_docstring(text, fc.wide).replace(fc.returns, fc.narrow)

    return {
        "comment": (comment, doc),
        "print": (print_inside, print_after) if inner else (print_after,),
        "assert": (assert_inside,),
        "cmp": (cmp_after, fused_check) if inner else (cmp_after,),
        "time-line": (time_after,),
        "time-cell": (time_cell,),
        "float64": (wide,),
        "typo": (typo_after,),
    }


def lambdas(notebook: str) -> list[str]:
    """The whole function as a lambda (Exercises 2 and 3)."""
    if notebook == EX2:
        return [
            "cross_entropy_backward = lambda logits, Y: (F.softmax(logits, 1) - F.one_hot(Y, logits.shape[1])) "
            "/ logits.shape[0]"
        ]
    if notebook == EX3:
        return [
            "batchnorm_backward = lambda dhpreact, bnraw, bngain, bnvar_inv: bngain * bnvar_inv * (\n"
            "    dhpreact - dhpreact.mean(0) - bnraw * (dhpreact * bnraw).sum(0) / (dhpreact.shape[0] - 1))"
        ]
    return []


# ---------------------------------------------------------------------------------------------
# Putting variants together


class Builder:
    """Collects variants, drops duplicates (the same notebook reached twice), numbers them."""

    def __init__(self) -> None:
        self.variants: list[Variant] = []
        self.seen: set = set()

    def add(self, notebook: str, rules, cells: dict[str, str], layout=()) -> None:
        edits = tuple(
            {"notebook": notebook, "cell": cell, "find": _original(notebook, cell), "replace": text}
            for cell, text in sorted(cells.items())
            if text != _original(notebook, cell)
        )
        key = (notebook, tuple((e["cell"], e["replace"]) for e in edits), tuple(layout))
        if (not edits and not layout) or key in self.seen:
            return
        self.seen.add(key)
        rules = tuple(sorted(set(rules)))
        number = sum(v.notebook == notebook for v in self.variants) + 1
        short = "-".join(rules) if len(rules) <= 2 else f"{len(rules)}-rules"
        vid = f"ex{NOTEBOOKS.index(notebook) + 1}-{number:03d}-{short}"
        self.variants.append(Variant(vid, notebook, rules, edits, tuple(layout)))


@functools.cache
def _original(notebook: str, cell: str) -> str:
    """The solved text of an answer cell, or of the training loop (Exercise 4's cell ``train``)."""
    if cell == "train":
        return next(c.source for c in solved(EX4).cells if c.get("id") == "train")
    return answer_cells(notebook)[cell]


def apply_forms(text: str, forms) -> tuple[str, list[str]]:
    """``text`` with each form applied whose ``find`` is still there; the rules of those applied."""
    applied = []
    for form in forms:
        if form.find in text:
            text = text.replace(form.find, form.replace, 1)
            applied.append(form.rule)
    return text, applied


def split_layout(cell: str, text: str) -> tuple[str, str, int] | None:
    """Split ``text`` at its middle top-level statement: ("split", cell, line), or None if it has one only."""
    starts = [i for i in _statement_starts(text.split("\n")) if i > 0]
    if len(starts) < 2:
        return None
    return ("split", cell, starts[len(starts) // 2])


def exercise1(b: Builder, rng: random.Random) -> None:
    cells = list(EX1_FORMS)
    # 1. every form alone
    for cell, forms in EX1_FORMS.items():
        for form in forms:
            text, applied = apply_forms(_original(EX1, cell), [form])
            b.add(EX1, applied, {cell: text})
    # 2. every decoration of every answer cell, and each cell split in two
    for cell in cells:
        for rule, decorations in EX1_DECORATIONS.items():
            for decorate in decorations:
                b.add(EX1, [rule], {cell: decorate(_original(EX1, cell))})
        split = split_layout(cell, _original(EX1, cell))
        if split:  # (the tanh cell is one statement)
            b.add(EX1, ["split"], {}, [split])
        b.add(EX1, ["spread"], {}, [("after", cell, cmps(_original(EX1, cell)).split("\n", 1)[1])])
    # 3. the issue's own example: the debug line with a typo at the end of the last answer cell
    b.add(EX1, ["typo"], {"answer_embedding": _original(EX1, "answer_embedding") + "\nprint(dC.shap)"})
    # 4. seeded compositions: forms in several cells, decorations on top, sometimes a split
    for _ in range(COMPOSITIONS[EX1] * 3):
        if sum(v.notebook == EX1 for v in b.variants) >= 360:
            break
        chosen = rng.sample(cells, rng.choice([1, 1, 2, 2, 3, 6]))
        rules, texts, layout = [], {}, []
        for cell in chosen:
            text, applied = apply_forms(_original(EX1, cell), rng.sample(EX1_FORMS[cell], rng.randint(1, 3)))
            rules += applied
            for rule in rng.sample([r for r in EX1_DECORATIONS if r not in ALONE], rng.randint(0, 2)):
                if rule == "time-line" and "%%time" in text or rule == "time-cell" and "%time" in text:
                    continue
                if rule == "time-line" and not _single_line_assignments(text):
                    continue
                text = rng.choice(EX1_DECORATIONS[rule])(text)
                rules.append(rule)
            texts[cell] = text
        if rng.random() < 0.15:
            cell = rng.choice(chosen)
            split = split_layout(cell, texts[cell])
            if split:
                layout.append(split)
                rules.append("split")
        b.add(EX1, rules, texts, layout)


def function_exercise(b: Builder, notebook: str, forms: list[Form], rng: random.Random) -> None:
    """Exercises 2 and 3: every form alone, every decoration alone, then seeded compositions."""
    fc = FUNCTION_CELLS[notebook]
    original = _original(notebook, fc.cell)
    decorations = fn_decorations(fc, notebook)
    for form in forms:
        text, applied = apply_forms(original, [form])
        b.add(notebook, applied, {fc.cell: text})
    for rule, decorate_all in decorations.items():
        for decorate in decorate_all:
            b.add(notebook, [rule], {fc.cell: decorate(original)})
    for text in lambdas(notebook):
        b.add(notebook, ["lambda"], {fc.cell: text})
    for rule, cells, layout in spread_over_cells(fc, original):
        b.add(notebook, [rule], cells, layout)
    for _ in range(COMPOSITIONS[notebook]):
        text, rules = apply_forms(original, rng.sample(forms, rng.randint(2, min(4, len(forms)))))
        for rule in rng.sample(list(decorations), rng.randint(0, 3)):
            if rule == "float64" and "float64" in rules:
                continue
            if rule == "time-cell" and "%time" in text or rule == "time-line" and "%%time" in text:
                continue
            text = rng.choice(decorations[rule])(text)
            rules.append(rule)
        b.add(notebook, rules, {fc.cell: text})


def spread_over_cells(fc: FunctionCell, original: str) -> list[tuple[str, dict, list]]:
    """The imports stay in the answer cell and the function moves to a new cell below it; or the answer
    cell is the function and a new cell below checks it."""
    imports = "import torch\nimport torch.nn.functional as F\n"
    return [
        ("split", {fc.cell: imports + original}, [("split", fc.cell, 2)]),
        ("spread", {}, [("after", fc.cell, fc.check)]),
    ]


def exercise4(b: Builder) -> None:
    """Exercise 4: each variant trains (grading mode), so few variants, each with several rules.

    Variant k takes every tenth form from the k-th on, and the k-th (and (k+10)-th) of the decorations,
    the training loop's rewrites and the spreads over cells: every rule appears, in 10 notebooks.
    """
    fc = FUNCTION_CELLS[EX4]
    original = _original(EX4, fc.cell)
    decorations = fn_decorations(fc, EX4)
    extras = [(rule, decorate) for rule, all_ in decorations.items() if rule != "float64" for decorate in all_]
    extras += [(f.rule, f) for f in TRAIN_FORMS] + [("time-cell", "train")]
    extras += [(rule, layout) for rule, _, layout in spread_over_cells(fc, original)]
    for k in range(10):
        text, rules = apply_forms(original, EX4_FORMS[k::10])
        cells, layout = {}, []
        for rule, extra in extras[k::10]:
            rules.append(rule)
            if isinstance(extra, Form):
                cells["train"] = apply_forms(cells.get("train", _original(EX4, "train")), [extra])[0]
            elif extra == "train":
                cells["train"] = time_cell(cells.get("train", _original(EX4, "train")))
            elif isinstance(extra, list):
                if extra[0][0] == "split":
                    text = "import torch\nimport torch.nn.functional as F\n" + text
                layout += extra
            else:
                text = extra(text)
        cells[fc.cell] = text
        b.add(EX4, rules, cells, layout)
    # the float64 round trip alone: it slows training down, once is enough
    b.add(EX4, ["float64"], {fc.cell: decorations["float64"][0](original)})


def corpus() -> list[Variant]:
    """Every variant, in a fixed order (the same on every run)."""
    rng = random.Random(SEED)
    b = Builder()
    exercise1(b, rng)
    function_exercise(b, EX2, EX2_FORMS, rng)
    function_exercise(b, EX3, EX3_FORMS, rng)
    exercise4(b)
    return b.variants


def summary(variants: list[Variant]) -> str:
    """The table ``python tests/honest_corpus.py`` prints: variants per rule (rows) and notebook (columns)."""
    per_notebook = Counter(v.notebook for v in variants)
    rules = sorted({r for v in variants for r in v.rules})
    counts = {(r, v.notebook): 0 for r in rules for v in variants}
    for v in variants:
        for r in v.rules:
            counts[(r, v.notebook)] += 1
    head = f"{'rule':14s}" + "".join(f"{n[:14]:>16s}" for n in NOTEBOOKS) + f"{'all':>8s}"
    rows = [head, "-" * len(head)]
    for r in rules:
        cells = [counts.get((r, n), 0) for n in NOTEBOOKS]
        rows.append(f"{r:14s}" + "".join(f"{c:16d}" for c in cells) + f"{sum(cells):8d}")
    rows.append("-" * len(head))
    rows.append(f"{'variants':14s}" + "".join(f"{per_notebook[n]:16d}" for n in NOTEBOOKS) + f"{len(variants):8d}")
    rows.append("(a variant counts once under each rule it uses: the rule rows add up to more than the variants)")
    return "\n".join(rows)


if __name__ == "__main__":
    print(summary(corpus()))
