"""Instructor commands: ``python -m grader release | demo | keys | autograde | gather``."""

from __future__ import annotations

import argparse
import sys

from .autograde import cli, gather, options
from .instructor import course, demo, keys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("release", help=course.cmd_release.__doc__).set_defaults(func=course.cmd_release)
    p = sub.add_parser("keys", help=keys.cmd_keys.__doc__)
    p.add_argument("names", nargs="*", help="notebooks to write (default: all), e.g. 01_atomic_backprop")
    p.set_defaults(func=keys.cmd_keys)
    p = sub.add_parser("demo", help=demo.cmd_demo.__doc__)
    demo.add_arguments(p)
    p.set_defaults(func=demo.cmd_demo)
    p = sub.add_parser("autograde", help="grade a class: parallel, sandboxed, resumable (see grader/autograde/)")
    options.add_arguments(p)
    p.set_defaults(func=cli.main)
    p = sub.add_parser("gather", help="after the shards of a class: grades.csv, summary and feedback of all")
    gather.add_arguments(p)
    p.set_defaults(func=gather.main)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except course.CourseError as exc:
        print(exc, file=sys.stderr)
        return 2
    except Exception as exc:
        from .data import NamesDataError  # no data set: its message says how to get one

        if not isinstance(exc, NamesDataError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
