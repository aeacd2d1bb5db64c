"""Live customer-advocacy KPIs from Kafka event streams.

The hot path (``HOT_PATH``: parsing, the record step, the tally) is also compiled by mypyc when the
package is installed (setup.py). ``ADVOCACY_PURE_PYTHON=1`` in the environment imports the pure-Python
modules instead, which give the same results; ``hot_path()`` says which ones run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder
from importlib.util import spec_from_file_location
from pathlib import Path
from types import ModuleType

__all__ = ["HOT_PATH", "PURE_PYTHON", "__version__", "hot_path"]

__version__ = "0.1.0"

#: the modules setup.py compiles (keep the two lists in step: tests/unit/test_hot_path.py checks)
HOT_PATH = ("stream.event", "stream.contract", "stream.timestamps", "stream.events", "stream.kpi.windows",
            "stream.kpi.record", "stream.kpi.step", "stream.kpi.cap", "stream.kpi.totals", "stream.codec")
PURE_PYTHON = "ADVOCACY_PURE_PYTHON"


class _PureFinder(MetaPathFinder):
    """Finds the ``.py`` source of a hot-path module, where the compiled extension would be found first."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:  # noqa: ARG002 (the finder protocol)
        if fullname not in HOT_PATH:
            return None
        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None or spec.origin.endswith(".py"):
            return spec
        return spec_from_file_location(fullname, Path(spec.origin).with_name(fullname.rpartition(".")[2] + ".py"))


if os.environ.get(PURE_PYTHON, "") not in ("", "0"):
    sys.meta_path.insert(0, _PureFinder())


def hot_path() -> str:
    """``compiled`` when every hot-path module was loaded from its mypyc extension, ``pure Python`` when
    none was (a mix would be a broken install: named as such)."""
    import importlib

    compiled = [not (importlib.import_module(name).__file__ or "").endswith(".py") for name in HOT_PATH]
    if all(compiled):
        return "compiled"
    return "pure Python" if not any(compiled) else "mixed (reinstall: pip install .)"
