"""grader.ipython: the progress bar never writes to stderr (the stub hint: test_atomic.py)."""

from grader import ipython, training


def test_the_progress_bar_writes_to_stdout_only(capsys):
    bar = ipython.progress(range(3000))
    for i in bar:
        if i % 1000 == 999:
            bar.set_postfix(loss="2.5000")
    out, err = capsys.readouterr()
    assert err == "" and "3000/3000" in out and "loss=2.5000" in out
    assert training.progress is ipython.progress  # the notebook calls grader.training.progress
