"""``python -m moensemble`` runs the command-line interface."""

from moensemble.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
