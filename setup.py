"""The compiled hot path: the modules of ``stream.HOT_PATH`` are also built as C extensions by mypyc
(from the same typed Python) when the package is installed (``pip install .``, ``make deps``, the
image). The pure-Python modules stay next to them: ``ADVOCACY_PURE_PYTHON=1`` runs those, and
``stream.hot_path()`` says which run (the worker logs it at start-up). Without a C compiler or the
Python headers the package installs pure Python, with a warning. Everything else is in pyproject.toml."""

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

HOT_PATH = [  # stream.HOT_PATH as files (tests/unit/test_hot_path.py checks the two agree)
    "stream/event.py",
    "stream/contract.py",
    "stream/timestamps.py",
    "stream/events.py",
    "stream/kpi/windows.py",
    "stream/kpi/record.py",
    "stream/kpi/step.py",
    "stream/kpi/cap.py",
    "stream/kpi/totals.py",
    "stream/codec.py",
]


def can_compile() -> bool:
    """A C compiler and Python.h: what mypyc's C needs."""
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    if shutil.which(compiler) and headers.is_file():
        return True
    sys.stderr.write(f"advocacy-stream: no C compiler ({compiler}) or no {headers}: installing the pure-Python "
                     "hot path (slower; the worker logs 'hot path: pure Python')\n")
    return False


if can_compile():
    from mypyc.build import mypycify

    setup(ext_modules=mypycify(HOT_PATH, opt_level="3", group_name="stream_hot"))
else:
    setup()
