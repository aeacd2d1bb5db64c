"""Producer tooling against a real broker: the typed helper and ``python -m stream publish``."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from stream.config import Settings, load_settings
from stream.embedded import free_port
from stream.errors import BrokerUnavailable, InvalidEvent
from stream.producer import Producer
from stream.publish import LARGE_FILE_BYTES
from stream.timestamps import parse_timestamp_us
from tests.conftest import Namespace
from tests.support import consume_all

pytestmark = pytest.mark.integration


def _read(settings: Settings, topic: str, expected: int) -> list[tuple[str, dict[str, Any]]]:
    records = consume_all(settings.kafka_bootstrap_servers, topic, expected, timeout=20)
    assert len(records) == expected, records
    return [(r.key.decode(), json.loads(r.value)) for r in records]


def _cli(args: list[str], env: dict[str, str], stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "stream", *args], env=env, input=stdin,
                            capture_output=True, timeout=90, check=False)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(),
                                       result.stderr.decode())


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _line(**fields: Any) -> bytes:
    event = {"event_id": str(uuid.uuid4()), "customer_id": "c-1", "occurred_at": _iso(datetime.now(UTC)),
             "kind": "testimonial", **fields}
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


# --- the helper ---------------------------------------------------------------------------


def test_helper_publishes_each_kind_keyed_by_customer_with_generated_ids_and_times(settings: Settings) -> None:
    """publish_* send to the configured topics, keyed by customer_id, with a uuid4 id and now by default."""
    at = datetime.now(UTC).replace(microsecond=250_001) - timedelta(hours=1)  # kept to the us

    async def run() -> list[Any]:
        async with Producer(settings.kafka_bootstrap_servers, settings=settings) as producer:
            return [
                await producer.publish_customer("c-1", "enterprise", "active",
                                                occurred_at=at.astimezone(timezone(timedelta(hours=2)))),
                await producer.publish_review("c-1", "review", rating=5, source="g2"),
                await producer.publish_review("c-2", "survey", nps=10, segment="smb", event_id="fixed-1",
                                              occurred_at=_iso(at)),
                await producer.publish_referral("c-1", referee_id="p-9", channel="link"),
                await producer.publish_ticket_closed("c-3", "T-1", "billing", agent_id="a-1"),
            ]

    started = time.time()
    receipts = asyncio.run(run())
    assert [r.topic for r in receipts] == [settings.customers_topic, settings.reviews_topic, settings.reviews_topic,
                                           settings.referrals_topic, settings.tickets_topic]
    assert _read(settings, settings.customers_topic, 1) == [
        ("c-1", {"event_id": receipts[0].event_id, "customer_id": "c-1", "occurred_at": _iso(at),
                 "segment": "enterprise", "status": "active"})]
    reviews = {v["event_id"]: (k, v) for k, v in _read(settings, settings.reviews_topic, 2)}
    key, review = reviews[receipts[1].event_id]
    assert key == "c-1"
    assert review["kind"] == "review"
    assert review["rating"] == 5
    assert review["source"] == "g2"
    assert uuid.UUID(review["event_id"]).version == 4
    assert "nps" not in review
    assert "segment" not in review
    assert review["occurred_at"].endswith("Z")
    assert started - 1 <= parse_timestamp_us(review["occurred_at"]) / 1e6 <= time.time() + 1
    assert reviews["fixed-1"] == ("c-2", {"event_id": "fixed-1", "customer_id": "c-2", "occurred_at": _iso(at),
                                          "segment": "smb", "kind": "survey", "nps": 10})
    [(key, referral)] = _read(settings, settings.referrals_topic, 1)
    assert key == "c-1"
    assert referral["referee_id"] == "p-9"
    assert referral["channel"] == "link"
    [(key, ticket)] = _read(settings, settings.tickets_topic, 1)
    assert key == "c-3"
    assert ticket["ticket_id"] == "T-1"
    assert ticket["team"] == "billing"
    assert ticket["agent_id"] == "a-1"


def test_helper_rejects_bad_events_before_sending_anything(settings: Settings) -> None:
    """A bad event raises InvalidEvent with the worker's reason and nothing reaches the topic."""
    now = datetime.now(UTC)
    bad: list[tuple[str, dict[str, Any]]] = [
        ("missing_field", {"kind": "review"}),  # a review needs a rating
        ("missing_field", {"kind": "survey", "rating": 5}),  # a survey needs an nps
        ("out_of_range", {"kind": "review", "rating": 6}),
        ("out_of_range", {"kind": "blog"}),
        ("future_timestamp", {"kind": "social", "occurred_at": now + timedelta(hours=1)}),
        ("too_old", {"kind": "social", "occurred_at": now - timedelta(days=91)}),
        ("invalid_timestamp", {"kind": "social", "occurred_at": datetime(2026, 1, 1)}),  # noqa: DTZ001 - naive on purpose
        ("invalid_timestamp", {"kind": "social", "occurred_at": "last tuesday"}),
        ("out_of_range", {"kind": "social", "segment": ""}),
    ]

    async def run() -> Any:
        async with Producer(settings=settings) as producer:
            for reason, kwargs in bad:
                with pytest.raises(InvalidEvent) as info:
                    await producer.publish_review("c-bad", **kwargs)
                assert info.value.reason == reason, (kwargs, info.value)
            with pytest.raises(InvalidEvent):
                await producer.publish_customer("c-bad", "smb", "paused")  # type: ignore[arg-type]
            return await producer.publish_review("c-bad", "social")

    receipt = asyncio.run(run())
    assert receipt.offset == 0  # same key, same partition: nothing was sent before it
    assert [k for k, _ in _read(settings, settings.reviews_topic, 1)] == ["c-bad"]


def test_helper_names_the_variable_when_the_broker_does_not_answer() -> None:
    """No broker at the bootstrap address: BrokerUnavailable naming ADVOCACY_KAFKA_BOOTSTRAP_SERVERS."""
    address = f"127.0.0.1:{free_port()}"

    async def run() -> None:
        async with Producer(address, settings=load_settings()):
            pass

    with pytest.raises(BrokerUnavailable, match="ADVOCACY_KAFKA_BOOTSTRAP_SERVERS"):
        asyncio.run(run())


# --- python -m stream publish ---------------------------------------------------------------


def test_publish_sends_good_lines_unchanged_and_reports_bad_ones_by_line_number(
        namespace: Namespace, settings: Settings, tmp_path: Path) -> None:
    """Bad lines go to stderr as FILE:LINE: reason; good ones are sent byte for byte, keyed; exit 1."""
    good = [_line(customer_id="c-1"), _line(customer_id="c-2", kind="review", rating=4),
            _line(customer_id="c-3", kind="survey", nps=9)]
    lines = [good[0], b"{not json", b"", _line(kind="review"), good[1] + b"\r",
             _line(rating="5", kind="review"), b"[]", good[2]]
    path = tmp_path / "reviews.jsonl"
    path.write_bytes(b"\n".join(lines))  # no newline after the last line
    result = _cli(["publish", "reviews", str(path)], namespace.env)
    assert result.returncode == 1, result
    errors = result.stderr.strip().splitlines()
    assert errors[0].startswith(f"{path}:2: invalid_json: ")  # then the JSON decoder's words
    assert errors[1:] == [
        f"{path}:4: missing_field: rating is required when kind=review",
        f"{path}:6: wrong_type: rating must be int",
        f"{path}:7: not_an_object: value is a JSON list, not an object",
    ], result.stderr
    assert result.stdout.strip() == f"reviews ({settings.reviews_topic}): sent 3, rejected 4"
    records = consume_all(settings.kafka_bootstrap_servers, settings.reviews_topic, 3, timeout=20)
    assert sorted((r.key, r.value) for r in records) == sorted(
        (json.loads(v)["customer_id"].encode(), v) for v in good)


def test_publish_reads_stdin_and_maps_the_logical_topic_to_the_configured_name(
        namespace: Namespace, settings: Settings) -> None:
    """`publish referrals` with lines on stdin sends them to ADVOCACY_REFERRALS_TOPIC and exits 0."""
    lines = [_line(customer_id=f"c-{i}", kind=None, channel="link") for i in range(5)]
    result = _cli(["publish", "referrals"], namespace.env, stdin=b"\n".join(lines) + b"\n\n")
    assert result.returncode == 0, result
    assert result.stderr == ""
    assert result.stdout.strip() == f"referrals ({settings.referrals_topic}): sent 5, rejected 0"
    records = consume_all(settings.kafka_bootstrap_servers, settings.referrals_topic, 5, timeout=20)
    assert sorted(r.key for r in records) == [f"c-{i}".encode() for i in range(5)]


def test_publish_dry_run_validates_without_a_broker(namespace: Namespace, tmp_path: Path) -> None:
    """--dry-run reports the same verdicts and never connects (no broker at the configured address)."""
    path = tmp_path / "customers.jsonl"
    path.write_bytes(_line(kind=None, segment="smb", status="active") + b"\n" + _line(kind=None, segment="smb") + b"\n")
    env = dict(namespace.env, ADVOCACY_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
    result = _cli(["publish", "customers", str(path), "--dry-run"], env)
    assert result.returncode == 1, result
    assert result.stderr.strip() == f"{path}:2: missing_field: status is required"
    assert "valid 1, rejected 1" in result.stdout


def test_publish_fails_with_one_line_when_the_broker_or_file_is_missing(namespace: Namespace, tmp_path: Path) -> None:
    """An unreachable broker or an unreadable file: one `error:` line on stderr and exit code 2."""
    path = tmp_path / "reviews.jsonl"
    path.write_bytes(_line() + b"\n")
    env = dict(namespace.env, ADVOCACY_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
    result = _cli(["publish", "reviews", str(path)], env)
    assert result.returncode == 2, result
    assert result.stderr.strip().splitlines()[-1].startswith("error: kafka at 127.0.0.1:")
    result = _cli(["publish", "reviews", str(tmp_path / "missing.jsonl")], namespace.env)
    assert result.returncode == 2, result
    assert result.stderr.strip() == f"error: cannot read {tmp_path / 'missing.jsonl'}: No such file or directory"


def test_publish_shows_a_progress_bar_for_a_large_file_on_a_terminal(
        namespace: Namespace, settings: Settings, tmp_path: Path) -> None:
    """A file over LARGE_FILE_BYTES with stderr on a terminal gets a rich progress bar; all lines are sent."""
    padding = "p" * 200
    lines = [_line(customer_id=f"c-{i % 50}", source=padding) for i in range(LARGE_FILE_BYTES // 300 + 1)]
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert path.stat().st_size >= LARGE_FILE_BYTES
    master, slave = pty.openpty()
    shown = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.Popen([sys.executable, "-m", "stream", "publish", "reviews", str(path)],
                            env=dict(namespace.env, COLUMNS="120"), stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    out, _ = proc.communicate(timeout=90)
    reader.join(timeout=10)
    os.close(master)
    assert proc.returncode == 0, shown.decode(errors="replace")
    assert out.decode().strip() == f"reviews ({settings.reviews_topic}): sent {len(lines)}, rejected 0"
    screen = shown.decode(errors="replace")
    assert "publishing" in screen, screen[-2000:]
    assert "━" in screen, screen[-2000:]
    assert f"{len(lines)} lines" in screen, screen[-2000:]
