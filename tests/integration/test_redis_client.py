"""One Redis client factory for the worker and replay: the TLS CA and the timeouts apply to both."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.config import Settings, load_settings
from stream.embedded import free_port, redis_path, stop, wait_port
from stream.redis_client import redis_client
from stream.replay import replay
from stream.topics import ensure_topics
from tests.conftest import Stack
from tests.support import require_binary

pytestmark = pytest.mark.integration


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([require_binary("openssl"), *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A redis-server that speaks TLS only, its certificate signed by a CA of the test's own."""
    require_binary("redis-server")
    work = tmp_path_factory.mktemp("tls-redis")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=advocacy test CA", cwd=work)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=work)
    (work / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "ext", cwd=work)
    port = free_port()
    proc = subprocess.Popen([redis_path(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", "server.pem", "--tls-key-file", "server.key",
                             "--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no", "--save", "",
                             "--appendonly", "no", "--dir", str(work), "--logfile", "redis.log"],
                            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=proc)
        yield f"rediss://127.0.0.1:{port}/0", work / "ca.pem"
    finally:
        stop(proc)


def _settings(redis_url: str, ca: Path | None, bootstrap: str = "127.0.0.1:9") -> Settings:
    return load_settings(redis_url=redis_url, redis_ssl_ca_file=str(ca) if ca else None,
                         kafka_bootstrap_servers=bootstrap, app_id="tls")


def test_the_factory_sets_the_timeouts_and_the_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    kwargs = redis_client(_settings("rediss://127.0.0.1:6380/0", ca)).connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 5
    assert kwargs["health_check_interval"] == 10
    assert kwargs["ssl_ca_certs"] == str(ca)


async def test_the_client_verifies_a_tls_redis_against_the_configured_ca(tls_redis: tuple[str, Path]) -> None:
    """With the CA: PONG. Without it, the server's certificate is not trusted."""
    url, ca = tls_redis
    client = redis_client(_settings(url, ca))
    assert await client.ping()
    await client.aclose()
    untrusted = redis_client(_settings(url, None))
    with pytest.raises(Exception, match=r"(?i)certificate"):
        await untrusted.ping()
    await untrusted.aclose()


async def test_replay_reaches_a_tls_redis_through_the_configured_ca(stack: Stack, tls_redis: tuple[str, Path]) -> None:
    """Replay uses the worker's factory: it reads and writes a Redis that only a client holding the
    CA can verify (its topics are empty: it checks the namespace, writes its rules, finishes)."""
    url, ca = tls_redis
    settings = _settings(url, ca, stack.bootstrap).model_copy(update={"reviews_topic": "tls-none-r",
                                                                       "referrals_topic": "tls-none-f",
                                                                       "tickets_topic": "tls-none-t",
                                                                       "customers_topic": "tls-none-c"})
    await ensure_topics(settings)
    summary = await replay(settings, "tls-rebuilt", idle_seconds=0.2, progress=False)
    assert summary.messages == 0
    client = redis_client(settings)
    assert await client.keys("tls-rebuilt:*meta")  # its rules, written through TLS by replay's own client
    await client.aclose()
