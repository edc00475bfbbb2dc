"""grader/autograde/options.py: one home for every option's default, the command line built from it."""

import argparse
import dataclasses
from pathlib import Path

import pytest

from grader.autograde import options
from grader.autograde.options import Options


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    options.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_command_lines_defaults_are_the_options_defaults():
    from_cli = options.from_args(parse("hw1", "submitted"))
    direct = Options(assignment="hw1", submissions=Path("submitted"))
    assert from_cli == direct
    assert direct.out == Path("build/autograde/hw1") and direct.course == Path(".")


def test_every_option_reaches_options():
    opts = options.from_args(
        parse(
            *("hw1", "subs", "--course", "c", "--out", "o", "--workers", "3", "--no-sandbox"),
            *("--db-url", "postgresql://x/y", "--shard", "2/3", "--cell-timeout", "7", "--student-timeout", "8"),
            *("--memory-gb", "0.5", "--force", "--no-progress", "--fresh-kernels", "--no-canary"),
            *("--max-processes", "64", "--max-file-mb", "16", "--tmp-mb", "32"),
        )
    )
    assert opts == Options(
        assignment="hw1",
        submissions=Path("subs"),
        course=Path("c"),
        out=Path("o"),
        workers=3,
        sandbox=False,
        db_url="postgresql://x/y",
        shard=(2, 3),
        cell_timeout=7,
        student_timeout=8,
        memory=2**29,
        nproc=64,
        fsize=16 * 2**20,
        tmp_bytes=32 * 2**20,
        force=True,
        progress=False,
        zygote=False,
        canary=False,
    )
    # every field but the one run() fills in is settable from the command line
    changed = {
        f.name for f in dataclasses.fields(Options) if getattr(opts, f.name) != getattr(options.DEFAULTS, f.name)
    }
    assert changed == {f.name for f in dataclasses.fields(Options)} - {"preload"}


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_a_bad_shard_is_refused(text):
    with pytest.raises(ValueError, match="--shard takes I/K"):
        options.shard(text)
    assert options.shard("2/5") == (2, 5)


def test_the_source_folder():
    assert Options(assignment="hw1", submissions=Path("s"), course=Path("/c")).source == Path("/c/source/hw1")
