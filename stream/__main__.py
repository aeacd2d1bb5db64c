"""Command line: ``python -m stream worker | demo | stack | schemas | publish | kpis``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from typing import Any

from stream import __version__
from stream.config import SOURCES, Settings, load_settings
from stream.errors import AdvocacyError

__all__ = ["main"]


def _logging(settings: Settings) -> None:
    from stream.logs import setup

    setup(settings.log_level)


async def _redis_ready(store: Any, settings: Settings, report: Any = None, attempts: int = 60) -> bool:
    """Wait for Redis; return whether the app's state exists.

    A refused login, an untrusted certificate or a missing ACL (NOPERM) is logged once (again
    when the reason changes), shown by the interim /health, and retried without giving up;
    only an unreachable Redis counts towards ``attempts``.
    """
    from stream.errors import StateError, StateUnavailable
    from stream.health import REDIS_UNAVAILABLE, Problem, redis_problem
    from stream.retry import StartupWait
    from stream.startup import redis_tls_problem

    wait = StartupWait(logging.getLogger("stream.worker"), attempts, report)
    while True:
        try:
            return bool(await store.has_state())
        except StateError as exc:  # StateUnavailable is one
            unavailable = isinstance(exc, StateUnavailable)
            problem = Problem(redis_problem(str(exc), unavailable, settings.app_id), str(exc))
            if problem.reason == REDIS_UNAVAILABLE and str(exc).endswith("ConnectionError"):
                url = settings.redis_url.get_secret_value()
                problem = await redis_tls_problem(url, settings.redis_ssl_ca_file) or problem
            if problem.reason != REDIS_UNAVAILABLE:
                await wait.denied(problem)
            elif not await wait.unreachable(problem.logged(), problem.reason):
                break
    raise StateUnavailable("redis did not answer; check ADVOCACY_REDIS_URL")


def _worker(settings: Settings) -> int:
    from stream.compat import require
    from stream.front import FrontProcess

    require()  # the library internals stream.batching relies on are as tested
    front = FrontProcess()  # the web port's server, a process of its own: /health answers from now on
    front.start()
    try:
        return _run_worker(settings, front.socket)
    finally:
        front.stop()


def _run_worker(settings: Settings, web_socket: str) -> int:
    import faust

    from stream.app import create_app
    from stream.startup import Waiting, interim_health
    from stream.topics import ensure_topics

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = create_app(settings, web_socket=web_socket)
    store = app.services.store

    async def prepare() -> None:
        waiting = Waiting("waiting for kafka")  # no address: /health is not for a network map
        async with interim_health(web_socket, waiting):
            await ensure_topics(settings, report=lambda reason: setattr(waiting, "reason", reason), access=True)
            waiting.reason = "waiting for redis"
            if not await _redis_ready(store, settings, lambda reason: setattr(waiting, "reason", reason)):
                logging.getLogger("stream.worker").info(
                    "no state for app %r in Redis: counting every topic from its earliest offset", settings.app_id)
            await store.check_rules()

    loop.run_until_complete(prepare())
    from stream.logs import logging_config

    _tune_gc(settings.gc_young_threshold)

    worker = faust.Worker(app, loop=loop, loglevel=settings.log_level, quiet=True,
                          logging_config=logging_config(settings.log_level))
    worker.execute_from_commandline()
    return 0


def _tune_gc(young_threshold: int) -> None:
    """Fewer, cheaper garbage collections on the hot path (``ADVOCACY_GC_YOUNG_THRESHOLD``;
    measured: 22 -> 13 us an event at 200,000).

    Start-up objects (modules, the app) are frozen out of collection, and the youngest
    generation is collected every ``young_threshold`` allocations instead of 700: every event
    allocates a few containers, and with the record cache growing, frequent collections kept
    promoting and re-scanning it. Reference counting still frees everything without cycles at
    once. 0 leaves Python's collector as it is.
    """
    if not young_threshold:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, 10, 10)


def _parser() -> argparse.ArgumentParser:
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
    demo.add_argument("--history-days", type=float, default=14.0,
                      help="days of past events to backfill before going live (default 14)")
    stack = sub.add_parser("stack", help="embedded broker + Redis + worker + demo (make run)")
    stack.add_argument("--collapse", default=None, metavar="SEGMENT")
    stack.add_argument("--customers", type=int, default=2000, help="the demo's customer base (default 2000)")
    stack.add_argument("--history-days", type=float, default=14.0, help="the demo's backfill (default 14)")
    schemas = sub.add_parser("schemas", help="write the JSON Schemas of the topics (the published contract)")
    schemas.add_argument("--out", default="schemas", help="directory (default: schemas)")
    schemas.add_argument("--check", action="store_true", help="only compare; exit 1 when out of date")
    publish = sub.add_parser("publish", help="validate JSON lines and publish the valid ones to a topic")
    publish.add_argument("topic", choices=[t.default for t in SOURCES])
    publish.add_argument("file", nargs="?", default=None, help="JSON lines file (default: stdin)")
    publish.add_argument("--dry-run", action="store_true", help="validate only, send nothing")
    kpis = sub.add_parser("kpis", help="show a worker's KPIs as tables in the terminal")
    kpis.add_argument("--watch", action="store_true", help="refresh every 2 s until Ctrl-C")
    kpis.add_argument("--window", default=None, help="one window, e.g. 7d (default: all)")
    kpis.add_argument("--url", default=None, help="worker URL (default: http://127.0.0.1:$ADVOCACY_WEB_PORT)")
    replay = sub.add_parser("replay", help="rebuild the KPI state from the retained topics into a new app id")
    replay.add_argument("--into", default=None, metavar="APP_ID",
                        help="app id (consumer group + Redis namespace) to build; default: <app id>-rebuild")
    replay.add_argument("--idle-seconds", type=float, default=3.0,
                        help="stop after the end offsets are reached and nothing arrived for this long")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        _logging(settings)
        if args.command == "worker":
            return _worker(settings)
        if args.command == "demo":
            from stream.demo import run_demo

            asyncio.run(run_demo(settings, customers=args.customers,
                                 collapse=args.collapse, seconds=args.seconds, seed=args.seed,
                                 history_days=args.history_days))
            return 0
        if args.command == "schemas":
            from pathlib import Path

            from stream.schemas import run as run_schemas

            return run_schemas(Path(args.out), check=args.check)
        if args.command == "publish":
            from stream.publish import run_publish

            return run_publish(settings, args.topic, args.file, dry_run=args.dry_run)
        if args.command == "kpis":
            from stream.view import run_view

            return run_view(args.url or f"http://127.0.0.1:{settings.web_port}", args.window, watch=args.watch)
        if args.command == "replay":
            from stream.replay import replay as run_replay

            into = args.into or f"{settings.app_id}-rebuild"
            summary = asyncio.run(run_replay(settings, into, idle_seconds=args.idle_seconds,
                                             progress=sys.stderr.isatty()))
            print(f"{summary.line()}\nstart the workers with ADVOCACY_APP_ID={into} to continue from here")
            return 0
        from stream.stack import run_stack

        return run_stack(settings, collapse=args.collapse, customers=args.customers, history_days=args.history_days)
    except AdvocacyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
