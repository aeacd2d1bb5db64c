"""The start-up check of the faust-streaming and aiokafka internals the worker relies on."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stream import compat
from stream.compat import IncompatibleLibrary, Member


class Library:
    def __init__(self) -> None:
        self.buffer: list[int] = []

    def fetch(self, timeout: float) -> None: ...


def test_the_installed_libraries_have_every_member_the_worker_relies_on() -> None:
    assert compat.check() == []
    assert len(compat.members()) >= 15


def test_a_renamed_method_or_attribute_is_reported() -> None:
    problems = compat.check([Member(Library, "_fetch", ("self", "timeout"), ""),
                             Member(Library, "_buffer", None, "")])
    assert [p.rsplit(".", 1)[-1] for p in problems] == ["_fetch is missing", "_buffer is missing"]


def test_attributes_set_in_init_and_methods_with_the_expected_parameters_pass() -> None:
    assert compat.check([Member(Library, "buffer", None, ""), Member(Library, "fetch", ("self", "timeout"), "")]) == []


def test_a_changed_signature_is_reported() -> None:
    problems = compat.check([Member(Library, "fetch", ("self", "timeout_ms"), "")])
    assert len(problems) == 1
    assert "expected ('self', 'timeout_ms')" in problems[0]


def test_require_names_the_first_problem_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "members", lambda: [Member(Library, "_a", None, ""), Member(Library, "_b", None, "")])
    with pytest.raises(IncompatibleLibrary) as caught:
        compat.require()
    message = str(caught.value)
    assert "\n" not in message
    assert "Library._a is missing" in message
    assert "(and 1 more)" in message


def test_every_override_in_the_batch_consumer_is_listed() -> None:
    """A private member that stream.batching (with stream.positions) overrides must be in the check."""
    from stream import batching, positions

    listed = {m.name for m in compat.members()}
    overridden = {name for cls in (batching.BatchConsumer, positions.StatePositions, batching.FetchTunedThread,
                                   batching.NoTableManager, batching.BatchApp)
                  for name in vars(cls) if name.startswith("_") and not name.startswith("__")}
    # our own, or abc's
    ours = {"_rewind", "_must_drop", "_hand_over", "_batches", "_stored_positions", "_seek_to", "_abc_impl"}
    assert overridden - ours <= listed


def test_a_worker_on_a_library_without_a_member_refuses_to_start_with_one_line() -> None:
    code = ("import faust.transport.consumer as c; del c.Consumer._new_offset; "
            "import sys; from stream.__main__ import main; sys.exit(main(['worker']))")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "ADVOCACY_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Consumer._new_offset is missing" in lines[0], result.stderr


def test_the_table_manager_start_is_faust_s_own_without_its_one_second_sleep() -> None:
    """stream.batching.NoTableManager.on_start copies Faust's TableManager.on_start but for the sleep: if a
    Faust release changes that method, this fails and the copy must be made again (the worker starts
    through it, so every e2e test runs it; this says when the copy drifted)."""
    import inspect

    from faust.tables import TableManager

    from stream.batching import NoTableManager

    def body(method: object) -> list[str]:
        lines = inspect.getsource(method).splitlines()[1:]  # without the def line
        return [line.strip() for line in lines if line.strip() and not line.strip().startswith(('"""', "#"))]

    theirs = body(TableManager.on_start)
    assert theirs[0] == "await self.sleep(1.0)"
    assert body(NoTableManager.on_start) == theirs[1:]
