"""Command line: ``python -m stream worker | demo | stack``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from stream import __version__
from stream.config import Settings, load_settings
from stream.errors import AdvocacyError


def _logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


def _worker(settings: Settings) -> int:
    import faust

    from stream.app import create_app
    from stream.topics import ensure_topics

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(ensure_topics(settings))
    app = create_app(settings)
    loop.run_until_complete(app.advocacy["store"].check_rules())
    worker = faust.Worker(app, loop=loop, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run one worker (any number may run side by side)")
    demo = sub.add_parser("demo", help="publish a realistic, continuous event flow")
    demo.add_argument("--customers", type=int, default=5000,
                      help="customer base size; the event rate follows from it")
    demo.add_argument("--collapse", default=None, metavar="SEGMENT",
                      help="make this segment's advocacy collapse below 60%%")
    demo.add_argument("--seconds", type=float, default=None, help="stop after this long")
    demo.add_argument("--seed", type=int, default=7)
    stack = sub.add_parser("stack", help="embedded broker + Redis + worker + demo (make run)")
    stack.add_argument("--collapse", default=None, metavar="SEGMENT")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        _logging(settings)
        if args.command == "worker":
            return _worker(settings)
        if args.command == "demo":
            from stream.demo import run_demo

            asyncio.run(run_demo(settings, customers=args.customers,
                                 collapse=args.collapse, seconds=args.seconds, seed=args.seed))
            return 0
        from stream.embedded import run_stack

        return run_stack(settings, collapse=args.collapse)
    except AdvocacyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
