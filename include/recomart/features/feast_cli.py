"""Feast's own command line, started without typeguard's import-time instrumentation.

``python -m recomart.features.feast_cli plan`` (run in ``feature_repo/`` with the
deployment's environment) behaves exactly like ``feast plan``, minus the seconds the
plain ``feast`` script spends instrumenting Feast's classes on import
(see :mod:`recomart.features.feast_import`). ``recomart.features.apply`` / ``plan`` and
``./recomart features feast ...`` run Feast this way.
"""

from __future__ import annotations

import sys

from recomart.features.feast_import import import_feast


def main(argv: list[str] | None = None) -> None:
    """Run Feast's click CLI with ``argv`` (default: this process's arguments); exits like ``feast``."""
    import_feast()
    from feast.cli.cli import cli

    cli.main(args=sys.argv[1:] if argv is None else argv, prog_name="feast")


if __name__ == "__main__":
    main()
