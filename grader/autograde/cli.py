"""The command line of the class command: ``python -m grader autograde ...`` and ``bn-autograde ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __doc__ as DESCRIPTION
from .options import GradingError, Options, add_arguments, from_args


def command(opts: Options) -> int:
    """Grade the class of ``opts``, print the summary and where everything went; 2 if it cannot be graded."""
    from .run import run
    from .summary import summary_text

    return 0 if reported(lambda: run(opts), summary_text, opts.out, opts.assignment) is not None else 2


def reported(make, text, out: Path, assignment: str) -> dict | None:
    """The summary ``make()`` returns, printed by ``text`` with where the class's files went; None, the reason
    printed on stderr, if it raises ``GradingError`` (``python -m grader autograde`` and ``gather``)."""
    try:
        summary = make()
    except GradingError as exc:
        print(exc, file=sys.stderr)
        return None
    print(text(summary))
    print(f"grades:   {out / 'grades.csv'}")
    print(f"feedback: {out / 'feedback'}/<student>/{assignment}/<notebook>.html")
    print(f"summary:  {out / 'summary.md'}")
    return summary


def main(args: argparse.Namespace) -> int:
    """The command on arguments parsed by a parser that ``options.add_arguments`` set up."""
    return command(from_args(args))


def console_main(argv: list[str] | None = None) -> int:
    """``bn-autograde ...`` = ``python -m grader autograde ...``."""
    parser = argparse.ArgumentParser(
        prog="bn-autograde", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(console_main())
