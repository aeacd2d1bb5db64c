"""Instructions per event of ``parse_speed`` and ``step_speed``, counted by valgrind's callgrind.

    python -m tests.bench.instructions [--events 20000] [--customers 2000]

Instruction counts do not move with the load of a shared machine, unlike times. Each benchmark
runs twice under callgrind, with one and with two timed passes over the same events: the
difference is one pass, without the start-up and the generation of the events. Run it from
another tree's root (``cd ../other && python -m tests.bench.instructions``) to compare trees: the
figures of docs/benchmarks-notes.md ("The compiled hot path") were taken so.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_TOTALS = re.compile(r"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


def instructions(module: str, events: int, customers: int, repeat: int) -> int:
    """Instructions executed by ``python -m module`` (with ``--repeat repeat``) under callgrind."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m", module,
                        "--events", str(events), "--customers", str(customers), "--repeat", str(repeat)],
                       check=True, capture_output=True)
        match = _TOTALS.search(out.read_text(encoding="utf-8"))
    assert match is not None, "callgrind wrote no totals"
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=2_000)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian package valgrind)")
    for name in ("parse_speed", "step_speed"):
        module = f"tests.bench.{name}"
        one, two = (instructions(module, args.events, args.customers, repeat) for repeat in (1, 2))
        print(f"{name}: {(two - one) / args.events:,.0f} instructions/event "
              f"({args.events} events, {args.customers} customers)")


if __name__ == "__main__":
    main()
