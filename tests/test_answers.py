"""The answer language (grader/answers.py) and its nbgrader step (grader/nbgrader_answers.py).

Zero false flags: every solution of the source notebooks, every real answer of source/demo_class.toml and
the other forms real answers take pass clean; the obfuscated cheats are flagged with a reason naming the
construct; under plain ``nbgrader autograde`` the graded cells after a flagged cell are held for review.
"""

import copy
from pathlib import Path

import nbformat
import pytest
from classes import released_course

from grader import answers
from grader.instructor import course

SOURCE = course.REPO / "source" / course.ASSIGNMENT
RELEASE = course.REPO / "release" / course.ASSIGNMENT
NOTEBOOKS = course.notebook_names(course.REPO)
# the deliberate cheats of the catalogue (its students held for review): everything else there is a real
# answer (right or wrong)
CHEATS = {s.id for s in course.demo_class(sandbox_only=True) if s.held or s.flagged}


def source_nb(name):
    return nbformat.read(SOURCE / f"{name}.ipynb", as_version=4)


def submission(student, name):
    """The notebook ``student`` of the catalogue hands in as ``name`` (None: a whole-file edit)."""
    src = source_nb(name)
    nb = nbformat.read(RELEASE / f"{name}.ipynb", as_version=4)
    if student.base == "solution":
        nb = course.solved(nb, src)
    for edit in student.edits:
        if edit["notebook"] == name:
            if "raw" in edit:
                return None
            course.apply_edit(nb, edit, src)
    return nb


# ---------------------------------------------------------------------------------------------
# No false flags


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_source_notebooks_and_their_release_are_clean(name):
    src = source_nb(name)
    release = nbformat.read(RELEASE / f"{name}.ipynb", as_version=4)
    assert answers.check_notebook(src, src) == []
    assert answers.check_notebook(release, src) == []
    assert answers.check_notebook(course.solved(release, src), src) == []


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_solution_cell_is_in_the_language(name):
    for gid, text in course.solutions(source_nb(name)).items():
        assert answers.check_source(text) == [], gid


STUDENTS = course.demo_class(sandbox_only=True)


@pytest.mark.parametrize("s", STUDENTS, ids=[s.id for s in STUDENTS])
def test_the_catalogue_flags_exactly_its_cheats(s):
    flagged = {}
    for name in s.submits(NOTEBOOKS):
        nb = submission(s, name)
        if nb is not None:
            flagged.update({f"{name}/{f.label}": f.reasons for f in answers.check_notebook(nb, source_nb(name))})
    if s.id in CHEATS:
        assert flagged, s.id
    else:
        assert flagged == {}, s.id


# forms real answers take, beyond the lecture's (each one cell, in a notebook's namespace)
REAL = [
    "dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1\ndlogits /= n",
    "dlogits = F.softmax(logits, dim=1) - F.one_hot(Yb, num_classes=logits.shape[1])\ndlogits = dlogits / n",
    "dC = torch.zeros_like(C)\ndC.index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))",
    "dC = torch.zeros((vocab_size, C.shape[1]))\nfor k in range(Xb.shape[0]):\n  for j in range(Xb.shape[1]):\n"
    "    dC[Xb[k, j]] += demb[k, j]",
    "dC = F.one_hot(Xb.view(-1), num_classes=C.shape[0]).float().T @ demb.view(-1, C.shape[1])",
    "dC = torch.einsum('nbv,nbe->ve', F.one_hot(Xb, C.shape[0]).float(), demb)",
    "dC = torch.zeros(C.shape)\nfor k, row in enumerate(Xb):\n    for j, ix in enumerate(row):\n"
    "        dC[ix] += demb[k, j]",
    "dcounts_sum = (-counts_sum**-2) * dcounts_sum_inv\ndcounts += dcounts_sum.expand(counts.shape)",
    "dhpreact = (1 - torch.tanh(hpreact)**2) * dh",
    "dbnmeani = -dbndiff.sum(0, keepdim=True)\ndhprebn += dbnmeani.expand_as(hprebn) / n",
    "dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)\n"
    "dlogits += (logits == logits.max(1, keepdim=True).values).float() * dlogit_maxes",
    "print(dlogits.shape, dlogits.sum().item())\nprint(f'{dlogits.abs().max():.3e}', 'dC' if n > 3 else None)",
    "print('max diff: %.2e' % (dlogits - dlogits).abs().max().item())\nprint('{} {:.4f}'.format(n, 1.0))",
    "cmp('logprobs', dlogprobs, logprobs)",
    "rows = [dlogits[i].sum() for i in range(n)]\nassert len(rows) == n, 'one per row'",
    "def cross_entropy_backward(logits, Y):\n    '''The fused gradient.'''\n    n, V = logits.shape\n"
    "    p = logits.softmax(1)\n    p[torch.arange(n), Y] -= 1\n    return p / n",
    "import torch\nimport torch.nn.functional as F\nimport math\nfrom torch.nn import functional as F\n"
    "x = math.sqrt(2.0) * torch.ones_like(h)",
    "with torch.no_grad():\n    dh = dlogits @ W2.T\n    dW2 = h.T @ dlogits\n    db2 = dlogits.sum(0)",
    "@torch.no_grad()\ndef step(p, g, lr=0.1):\n    p.data += -lr * g\n    return p",
    "for p, grad in zip(parameters, grads):\n    p.data += -0.1 * grad\n    p.add_(grad, alpha=-0.1)",
    "# YOUR CODE HERE\nraise NotImplementedError()",
    "total = 0\nwhile total < 3:\n    total += 1\nelse:\n    pass\nx = [i * 2 for i in range(3) if i]",
    "sq = lambda t: t * t\ndhpreact = (1.0 - sq(h)) * dh",
    "dlogits = torch.where(logits > 0, logits, torch.zeros_like(logits)).clamp(min=0)",
    "a, *b = 1, 2, 3\ndel a\nprint(type(h), isinstance(h, type(h)), max(1, 2), abs(-1), float(n), int(2.5))",
    "dhprebn = bngain*bnvar_inv/n * (n*dhpreact - dhpreact.sum(0) - n/(n-1)*bnraw*(dhpreact*bnraw).sum(0))",
    "from torch import Tensor\ndef f(x: torch.Tensor, y: Tensor) -> tuple[Tensor, int]:\n"
    "    assert isinstance(x, torch.Tensor)\n    return x, 1",
    "%matplotlib inline\nx = %time dlogits.sum()",
    "%%time\ndh = dlogits @ W2.T",
    # ordinary torch and Python beyond any list: graded on their values, never held
    "dhpreact = dh / torch.cosh(hpreact)**2",
    "dhpreact = dh * 4 * torch.sigmoid(2 * hpreact) * (1 - torch.sigmoid(2 * hpreact))",
    "dlogits = torch.special.softmax(logits, 1) - F.one_hot(Yb, 27).to(torch.float32)\ndlogits.div_(n)",
    "dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[torch.arange(n), Yb] = -1.0/n",
    "dC = torch.zeros_like(C).index_put_((Xb.flatten(),), demb.flatten(0, 1), accumulate=True)",
    "x = torch.linalg.vector_norm(dh) + torch.nan_to_num(dh).logaddexp(dh).sum()",
    "print(dC.shap)",
    "print('{0.shape} {1}'.format(dC, n))\nprint(f'{dC.shape!r:>20}')",
    "try:\n    print(dC.shape)\nexcept NameError as e:\n    print('not yet', e)",
    "def rows(t):\n    yield from (r for r in t)\nlist(rows(dh))",
    "def memo(f):\n    return f\n@memo\ndef step(x):\n    return x * 2",
    "with torch.no_grad(), open_ := None or torch.no_grad():\n    pass",
    "total = 0\ndef add(k):\n    global total\n    total += k",
    "match n:\n    case 32:\n        pass\n    case _:\n        pass",
    "dlogits?",
    "torch.cosh??",
    "%whos",
    "time dh = dlogits @ W2.T",
    "display(dC.shape)",
    "msg = 'step {:6d}: loss {:.4f}'\nprint(msg.format(7, 2.5))",
    "x = copy = dC.clone()\nL = [1, 2]\nM = L.copy()",
]


@pytest.mark.parametrize("code", REAL)
def test_real_answer_forms_are_in_the_language(code):
    assert answers.check_source(code) == []


def _wrong_implementations():
    """The real wrong answers the checkers' tests are made of: the functions of tests/test_fused.py and
    tests/test_training.py that take the exercise's arguments (each as a student would write it)."""
    import ast

    out = []
    for name in ("test_fused.py", "test_training.py"):
        text = (course.REPO / "tests" / name).read_text()
        for node in ast.parse(text).body:
            args = [a.arg for a in node.args.args] if isinstance(node, ast.FunctionDef) else []
            if args[:1] in (["logits"], ["dhpreact"]) and not node.decorator_list:
                out.append(pytest.param(ast.get_source_segment(text, node), id=f"{name}:{node.name}"))
    return out


@pytest.mark.parametrize("code", _wrong_implementations())
def test_the_wrong_answers_of_the_checkers_tests_are_in_the_language_unless_they_use_autograd(code):
    reasons = answers.check_source(code)
    if ".backward(" in code or "requires_grad" in code:
        assert reasons
    else:
        assert reasons == []


def test_a_cell_that_does_not_compile_runs_nothing_and_is_not_flagged():
    assert answers.check_source("dlogits = (") == []
    assert answers.check_source("print dC") == []  # a typo: IPython raises SyntaxError, nothing runs


def test_each_reason_names_its_line():
    reasons = answers.check_source("dh = dlogits @ W2.T\nx = getattr(torch, 'zeros')\ny = getattr(torch, 'ones')")
    assert reasons == ["line 2 (`x = getattr(torch, 'zeros')`): reads attributes by name (`getattr`)"]


# ---------------------------------------------------------------------------------------------
# The cheats: each flagged, the reason naming the construct

CHEAT_FORMS = {
    "def f(): pass\nf.__globals__['grader']": "__globals__",
    "torch.__builtins__['exec']('x = 1')": "__builtins__",
    "g = getattr(getattr(torch, 'auto' + 'grad'), 'grad')": "getattr",
    "ag = vars(torch)['autograd']": "vars",
    "torch.Tensor.__sub__ = torch.Tensor.__add__": "torch.Tensor",
    "import sys\nsys.settrace(None)": "sys",
    "import importlib": "importlib",
    "[].__class__.__base__.__subclasses__()": "__class__",
    "exec('import os')": "exec",
    "x = eval('1 + 1')": "eval",
    "print(open('/etc/passwd').read())": "open",
    "get_ipython().run_line_magic('env', '')": "get_ipython",
    "loss.backward()": ".backward",
    "x = logits.detach().requires_grad_()": "requires_grad_",
    "x = torch.zeros(3, requires_grad=True)": "requires_grad=",
    "d = torch.autograd.grad(loss, logits)": "torch.autograd",
    "from torch.autograd import grad": "autograd",
    "globals()['cmp'] = lambda *a: None": "globals",
    "setattr(torch, 'tanh', torch.exp)": "setattr",
    "import os": "os",
    "m = __import__('o' + 's')": "__import__",
    "cmp = lambda *args: None": "cmp",
    "def cmp(*args):\n    pass": "cmp",
    "torch.tanh = torch.exp": "torch.tanh",
    "F.cross_entropy = lambda *a: 0": "F.cross_entropy",
    "logprobs.grad = dlogprobs": "logprobs.grad",
    "import grader.atomic\ngrader.atomic.verify = print": "grader",
    "print(In[-2][::-1])": "`In`",
    "print(_ih[3])": "_ih",
    "print(_i4)": "_i4",
    "print('{0.__globals__}'.format(cmp))": "__globals__",
    "print('{0.grad}'.format(logits))": "format string",
    "!cat /etc/passwd": "shell",
    "%env": "magic",
    "%time loss.backward()": ".backward",
    "%%timeit\nimport os": "os",
    "get_ipython().system('ls')": "get_ipython",
    "dlogits.grad?": ".grad",
    "x = type('T', (), {})": "type",
    "class T:\n    pass": "class",
    "def g():\n    global cmp\n    cmp = None": "cmp",
    "try:\n    1 / 0\nexcept Exception as e:\n    f = e.__traceback__": "__traceback__",
    "def g():\n    yield 1\nx = g().gi_frame.f_back": "frames",
    "await something()": "await",
    "@staticmethod\ndef g():\n    pass": "staticmethod",
    "with open('x') as f:\n    pass": "open",
    "x = torch.os.environ": ".os",
    "x = h.grad_fn.next_functions": "grad_fn",
    "x = torch.func.grad(f)": "torch.func",
    "h.register_hook(print)": "register_hook",
    "with torch.enable_grad():\n    pass": "enable_grad",
    "import grader": "grader",
    "torch = None": "torch",
    "x = C._version": "private",
    "torch.Tensor.add = torch.Tensor.sub": "torch.Tensor.add",
    "T = type(h)\nT.sub = T.add": "T.sub",
    "def f(x: exec('import os')):\n    pass": "exec",
    "x = breakpoint": "breakpoint",
    "import numpy as np": "numpy",
    "from os import path": "os",
    "x = torch.zeros(3, **{'requires_' + 'grad': True})": "`**`",
    "print(('{0' + '.x}').format(cmp))": "format string made at run time",
    "print(str.format('{0' + '.x}', cmp))": "format string made at run time",
    "msg = '{0.x}'\nmsg = msg + '{0.__globals__}'\nprint(msg.format(cmp))": "format string made at run time",
    # the deny-list's other kinds: global settings, hooks, the standard library through torch, frames
    "torch.set_default_dtype(torch.float64)": "global settings",
    "torch.nn.modules.module.register_module_forward_hook(print)": "registers a hook",
    "x = torch.utils.cpp_extension": "torch.utils",
    "x = torch.multiprocessing.Process": "processes",
    "x = torch.hub.load": "torch.hub",
    "x = torch.inspect.currentframe()": "`inspect`",
    "x = torch.functional.os.environ": "`os`",
    "print('{0.gi_frame}'.format(rows))": "frames",
    "x = operator.attrgetter('grad')": "attrgetter",
    "x = h.grad_fn.next_functions[0]": "grad_fn",
    "from torch import utils": "torch.utils",
    # IPython's automagic: a one-line cell `time CODE` runs as `%time CODE`, `ls` as `%ls`
    "time loss.backward()": ".backward",
    "time x = getattr(torch, 'auto' + 'grad')": "getattr",
    "ls /": "magic `%ls`",
    "pip install numpy": "magic `%pip`",
}


@pytest.mark.parametrize("code", list(CHEAT_FORMS), ids=range(len(CHEAT_FORMS)))
def test_each_obfuscated_cheat_is_flagged_with_its_construct(code):
    reasons = answers.check_source(code)
    assert reasons, code
    assert any(CHEAT_FORMS[code] in r for r in reasons), reasons


def test_the_training_loop_may_use_the_grader_chains_its_notebook_shows():
    src = source_nb("04_full_training")
    allow = answers.allowances(src)
    assert "grader.training.progress" in allow.chains
    assert answers.check_source("bar = grader.training.progress(range(10))", allow) == []
    assert answers.check_source("grader.training.verify_model(parameters)", allow)  # hidden: not visible code
    assert answers.check_source("grader.training.progress = print", allow)
    assert answers.check_source("x = grader.training._REFERENCE", allow)


def test_an_added_cell_and_an_edited_training_loop_are_checked():
    src = source_nb("04_full_training")
    nb = course.solved(nbformat.read(RELEASE / "04_full_training.ipynb", as_version=4), src)
    train = next(i for i, c in enumerate(nb.cells) if c.get("id") == "train")
    nb.cells[train].source += "\ntorch.Tensor.__sub__ = torch.Tensor.__add__"
    nb.cells.insert(2, nbformat.v4.new_code_cell("x = vars(torch)"))
    flags = answers.check_notebook(nb, src)
    assert [f.label for f in flags] == ["added cell 3", "cell train"]
    assert [f.index for f in flags] == [2, train + 1]


def test_a_copy_of_a_locked_cell_is_instructor_code():
    src = source_nb("01_atomic_backprop")
    nb = copy.deepcopy(src)
    setup = copy.deepcopy(nb.cells[next(i for i, c in enumerate(nb.cells) if c.get("id") == "setup")])
    del setup.metadata["nbgrader"]
    setup.id = "setup-again"
    nb.cells.insert(5, setup)
    assert answers.check_notebook(nb, src) == []


# ---------------------------------------------------------------------------------------------
# Plain nbgrader autograde with the course's nbgrader_config.py


@pytest.mark.slow
def test_nbgrader_autograde_holds_the_cells_after_a_flagged_cell(tmp_path):
    from nbgrader.api import Gradebook

    root = released_course(tmp_path / "course")
    name = "02_fused_cross_entropy"
    honest = course.DemoStudent("honest", "solution", {}, notebooks=[name])
    course.make_submission(root, honest)
    cheat = course.DemoStudent("cheat", "solution", {}, notebooks=[name])
    folder = course.make_submission(root, cheat)
    nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
    after = 1 + next(i for i, c in enumerate(nb.cells) if c.get("id") == "test_cross_entropy_backward_check_network")
    nb.cells.insert(after, nbformat.v4.new_code_cell("zeros = getattr(torch, 'zeros' + '_like')"))
    nbformat.write(nb, folder / f"{name}.ipynb")
    course.nbgrader(root, "autograde", course.ASSIGNMENT)
    scores = course.scores(root)
    got = {c.cell: c for c in scores["honest"] if c.notebook == name}
    assert got and all(c.score == c.max_score and not c.needs_manual_grade for c in got.values())
    got = {c.cell: c for c in scores["cheat"] if c.notebook == name}
    check = got.pop("test_cross_entropy_backward_check_network")
    assert check.score == check.max_score and not check.needs_manual_grade  # before the flagged cell
    assert set(got) == {"test_cross_entropy_backward_new_shapes", "test_cross_entropy_backward_large_logits"}
    assert all(c.needs_manual_grade and c.score == 0 for c in got.values())
    with Gradebook(f"sqlite:///{Path(root) / 'gradebook.db'}") as gb:
        sub = gb.find_submission_notebook(name, course.ASSIGNMENT, "cheat")
        assert sub.flagged
        assert all(g.auto_score is None for g in sub.grades if g.name in got)
        comment = gb.find_comment("answer_cross_entropy_backward", name, course.ASSIGNMENT, "cheat").comment
        assert "Held for manual grading" in comment and "getattr" in comment
        assert "test_cross_entropy_backward_new_shapes 2.0/2" in comment
        assert not gb.find_submission_notebook(name, course.ASSIGNMENT, "honest").flagged


def test_the_cells_held_are_the_graded_cells_after_the_first_flagged_cell():
    from grader import nbgrader_answers

    src = source_nb("02_fused_cross_entropy")
    nb = course.solved(nbformat.read(RELEASE / "02_fused_cross_entropy.ipynb", as_version=4), src)
    first_test = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade"))
    nb.cells.insert(first_test + 1, nbformat.v4.new_code_cell("import os"))
    flags = answers.check_notebook(nb, src)
    assert [f.label for f in flags] == [f"added cell {first_test + 2}"]
    assert nbgrader_answers.held_cells(nb, flags) == [
        "test_cross_entropy_backward_new_shapes",
        "test_cross_entropy_backward_large_logits",
    ]
    # an added cell's reasons go to the comment of the answer cell before it
    assert list(nbgrader_answers.comment_cells(nb, flags)) == ["answer_cross_entropy_backward"]
    assert nbgrader_answers.held_cells(nb, []) == []


def test_the_answer_language_never_imports_torch():
    import subprocess
    import sys

    code = "import sys, grader.answers, grader.leakguard, grader.nbgrader_answers; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_prechecks_flag_what_the_course_holds(tmp_path):
    from grader.autograde import precheck

    name = "01_atomic_backprop"
    cheat = next(s for s in STUDENTS if s.id == "copies-grad")
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(submission(cheat, name), path)
    report = precheck.check("copies-grad", {name: path}, SOURCE, tmp_path / "checked")
    ours = [f for f in report.flags if "outside the answer language" in f]
    assert ours and all(f.startswith(f"{name}/answer_") for f in ours) and ".backward" in ours[0]
    # a course whose nbgrader_config.py does not hold for the language gets no such flag
    other = tmp_path / "other" / "source" / course.ASSIGNMENT
    other.mkdir(parents=True)
    (other / f"{name}.ipynb").write_bytes((SOURCE / f"{name}.ipynb").read_bytes())
    report = precheck.check("copies-grad", {name: path}, other, tmp_path / "checked2")
    assert not [f for f in report.flags if "outside the answer language" in f]


@pytest.mark.parametrize(
    "code, holds",
    [
        ("x = logits.detach().requires_grad_()\nF.cross_entropy(x, Yb).backward()\ndlogits = x.grad", False),
        ("d = torch.autograd.grad(loss, logits)", False),
        ("from torch.func import grad\nimport torch.autograd as ag", False),
        ("x = torch.zeros(3, requires_grad=True)", False),
        ("time loss.backward()", False),
        ("logprobs.grad = dlogprobs", True),  # writes an attribute: a cmp that reads .grad would be fooled
        ("g = getattr(torch, 'autograd')", True),
        ("with torch.enable_grad():\n    pass", True),  # torch's global state
        ("h.register_hook(print)", True),
        ("loss.backward()\ncmp = print", True),
    ],
)
def test_reading_autograd_flags_the_cell_but_holds_nothing(code, holds):
    """A hold is narrow: reading autograd changes only the values computed from it, which the hidden tests fail
    (grader/integrity.py); only what could change the checking code holds the graded cells after it."""
    judged = answers.judge_source(code)
    assert judged.reasons and judged.holds is holds, judged


def test_a_notebook_that_only_reads_autograd_holds_no_cell():
    from grader import nbgrader_answers

    src = source_nb("02_fused_cross_entropy")
    nb = course.solved(nbformat.read(RELEASE / "02_fused_cross_entropy.ipynb", as_version=4), src)
    nb.cells.insert(2, nbformat.v4.new_code_cell("x = logits.detach().requires_grad_()"))
    flags = answers.check_notebook(nb, src)
    assert [f.holds for f in flags] == [False]
    assert nbgrader_answers.held_cells(nb, flags) == []
    nb.cells.insert(3, nbformat.v4.new_code_cell("torch.tanh = torch.exp"))
    assert nbgrader_answers.held_cells(nb, answers.check_notebook(nb, src))  # this one holds what follows
