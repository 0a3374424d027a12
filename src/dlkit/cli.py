"""The dlkit command: `dlkit course [--quick]` runs the course, `dlkit doctor` checks the machine,
`dlkit exercises` lists the exercises and their state, `dlkit check LESSON[.EXERCISE]` checks them.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _machine() -> str:
    import torch

    from dlkit.device import describe_device, get_device

    return (
        f"{platform.machine()} {platform.system()}, {describe_device(get_device())}, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def _course(args: argparse.Namespace) -> int:
    from dlkit.course import find_root, format_table, run_course, write_report

    root = find_root(args.root)
    runs_dir = Path(args.runs_dir) if args.runs_dir else root / "runs"
    mode = "quick" if args.quick else "full"
    print(f"Deep Learning with PyTorch: running the course in {mode} mode from {root}")
    results = run_course(
        root, quick=args.quick, device=args.device, only=args.only, runs_dir=runs_dir, timeout=args.timeout
    )
    print()
    print(format_table(results))
    report = write_report(results, runs_dir / "course_report.md", quick=args.quick, machine=_machine())
    print(f"report: {report}")
    return 0 if all(r.passed for r in results) else 1


def _doctor(args: argparse.Namespace) -> int:
    from dlkit.doctor import main as doctor_main

    return doctor_main()


def _exercises(args: argparse.Namespace) -> int:
    from dlkit.errors import run_cli
    from dlkit.exercises import list_main

    return run_cli(lambda: list_main(args.lessons, root=args.root))


def _check(args: argparse.Namespace) -> int:
    from dlkit.errors import run_cli
    from dlkit.exercises import check_main

    return run_cli(lambda: check_main(args.exercise, file=args.file, root=args.root))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dlkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    course = sub.add_parser("course", help="run every lesson in learning-path order and summarise")
    course.add_argument("--quick", action="store_true", help="tiny data: seconds per lesson, no network")
    course.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1, mps")
    course.add_argument(
        "--only", nargs="*", default=[], help="run only lessons whose path contains one of these"
    )
    course.add_argument("--root", default=None, help="the repository root (default: found automatically)")
    course.add_argument("--runs-dir", default=None, help="where runs and the report go (default: ROOT/runs)")
    course.add_argument("--timeout", type=float, default=3600, help="seconds allowed per lesson")
    course.set_defaults(func=_course)
    doctor = sub.add_parser("doctor", help="versions, devices, datasets found, and fixes for problems")
    doctor.set_defaults(func=_doctor)
    exercises = sub.add_parser("exercises", help="every lesson's exercises: not started, failing or passing")
    exercises.add_argument("lessons", nargs="*", help="only these lessons, e.g. fundamentals/02")
    exercises.add_argument("--root", default=None, help="the repository root (default: found automatically)")
    exercises.set_defaults(func=_exercises)
    check = sub.add_parser("check", help="run the checks of a lesson's exercises and say what to fix")
    check.add_argument(
        "exercise", help="LESSON or LESSON.EXERCISE, e.g. fundamentals/02 or fundamentals/02.mse_grad"
    )
    check.add_argument("--file", default=None, help="check this copy of the lesson (.py or .ipynb) instead")
    check.add_argument("--root", default=None, help="the repository root (default: found automatically)")
    check.set_defaults(func=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
