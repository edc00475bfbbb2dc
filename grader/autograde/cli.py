"""The command line of the class command: ``python -m grader autograde ...`` and ``bn-autograde ...``."""

from __future__ import annotations

import argparse
import sys

from . import __doc__ as DESCRIPTION
from .options import GradingError, Options, add_arguments, from_args


def command(opts: Options) -> int:
    """Grade the class of ``opts``, print the summary and where everything went; 2 if it cannot be graded."""
    from .run import run
    from .summary import summary_text

    try:
        summary = run(opts)
    except GradingError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(summary_text(summary))
    print(f"grades:   {opts.out / 'grades.csv'}")
    print(f"feedback: {opts.out / 'feedback'}/<student>/{opts.assignment}/<notebook>.html")
    print(f"summary:  {opts.out / 'summary.md'}")
    return 0


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
