"""Import Feast without typeguard's import-time instrumentation (the bulk of a cold lookup).

Feast 0.67 decorates its definition classes (``FeatureView``, ``DataSource`` and its
subclasses, ``Entity``, ``Field``, ``FeatureService``, ``Project``, ...) with typeguard's
``@typechecked``. Typeguard 4 instruments at decoration time: for each decorated method it
reads the module's source, parses it, rewrites the syntax tree and compiles the whole
module again (agronholm/typeguard#468). ``import feast`` does that 253 times, which was
about two thirds of the CPU time of a cold ``recomart features user <id>`` (see the
README's Feast section for the measured breakdown).

Typeguard makes the decorator a pass-through when Python runs optimised (``python -O``),
because its checks are a development aid. :func:`import_feast` does the same for this
process only, before Feast is first imported: Feast's own logic is unchanged, only the
run-time checks of argument types on those classes are skipped (a wrong type fails later,
inside Feast, rather than with typeguard's ``TypeCheckError``). Nothing else installed
here uses typeguard (``requirements.txt``: ``typeguard  # via feast``).
"""

from __future__ import annotations

import sys
from typing import Any


def _pass_through(target: Any = None, **_options: Any) -> Any:
    """``@typechecked`` as under ``python -O``: returns the decorated object unchanged.

    Works both bare (``@typechecked``) and with options (``@typechecked(...)``).
    """
    if target is None:
        return _return_unchanged
    return target


def _return_unchanged(target: Any) -> Any:
    return target


def import_feast() -> None:
    """Import ``feast`` with ``@typechecked`` as a pass-through (a no-op once Feast is imported).

    The swap stays for the life of the process: Feast imports more decorated modules later
    (the Postgres source when the registry is read, the stores when a config is validated).
    If Feast was already imported by someone else, nothing changes (and nothing is gained).
    """
    if "feast" in sys.modules:
        return
    import typeguard

    typeguard.typechecked = _pass_through
    import feast  # noqa: F401  (imported for its side effect: the package is now loaded)
