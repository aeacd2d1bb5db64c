"""The tooling subcommands of ``python -m stream``, without a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.__main__ import main
from stream.schemas import TOPIC_KINDS


def test_publish_accepts_exactly_the_published_topics(tmp_path: Path) -> None:
    """Every topic with a JSON Schema is a `publish` choice, and nothing else is."""
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n")
    for topic in TOPIC_KINDS:
        assert main(["publish", topic, str(empty), "--dry-run"]) == 0
    with pytest.raises(SystemExit) as info:
        main(["publish", "blogs", str(empty), "--dry-run"])
    assert info.value.code == 2
