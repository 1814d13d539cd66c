"""The ``moensemble`` command line.

``moensemble compare`` with no arguments compares single models, a weighted, a stacked and a
gated ensemble, a mixture of experts and a stacked ensemble with the mixture as a member on a
stratified subset of the bundled WordNet glosses,
prints the leaderboard and writes it (CSV, JSON) with its plots (PNG) to
``moensemble-output/`` (:mod:`moensemble.cli.compare`).
``moensemble compare --data FILE --target COL --text-column COL`` does the same on a CSV or
Parquet file. ``moensemble tune`` runs one worker of a shared Optuna study
(:mod:`moensemble.cli.tune`).

User mistakes (a missing file or column, a target with one class, ...) end with a one-line
message on stderr (``moensemble compare: error: ...``, as argparse's usage errors) and exit
code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Sequence

from moensemble.cli import compare, tune
from moensemble.cli.common import EXIT_USAGE, OneLineParser, UserError

__all__ = ["main", "build_parser"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 2 user error, 130 interrupted).

    Parameters
    ----------
    argv : sequence of str, default=None
        Arguments without the program name; ``None`` reads ``sys.argv[1:]``.
    """
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # named by the subcommand that was given them, as its other errors
            parser.subcommands.get(args.command, parser).error(
                f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # --help, --version, or an argparse usage error (already printed)
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        with _terminate_as_exit():
            return args.run(args)
    except UserError as exc:
        # One line, even when a library's message has several (SQLAlchemy's does).
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        # Prefixed like argparse's own errors of the subcommand ("moensemble compare: error:").
        print(f"moensemble {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("moensemble: interrupted", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _terminate_as_exit():
    """SIGTERM (``kill``, ``timeout``) raises ``SystemExit(143)`` instead of ending the
    process at once, so that ``finally`` blocks run: ``compare`` removes its temporary
    cache (``/tmp/moensemble-cache-*``, gigabytes on a large run)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: the ``compare`` and ``tune`` subcommands."""
    from moensemble import __version__

    parser = OneLineParser(
        prog="moensemble",
        description="Ensembles and mixtures of experts with a scikit-learn API.",
    )
    parser.add_argument("--version", action="version", version=f"moensemble {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    compare.register(commands)
    tune.register(commands)  # `moensemble tune`: a worker of a shared Optuna study
    parser.subcommands = commands.choices  # name -> its parser, for main's usage errors
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
