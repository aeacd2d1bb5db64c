# The advocacy worker image: `python -m stream worker` (docs/contract.md, "Running it").
# Configuration is environment only (ADVOCACY_*, see docs/configuration.md).
# The base image is pinned by tag and digest; the Python dependencies come from
# requirements.lock (exact versions, SHA-256 hashes checked by pip; `make lock` renews it).
FROM python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY stream ./stream
# the project itself: nothing downloaded (its build backend is in the lock)
RUN pip install --no-deps --no-build-isolation --no-index . \
    && useradd --system --uid 10001 --home-dir /var/lib/advocacy --create-home advocacy

# Faust keeps a small data directory in the working directory: make it the user's own.
WORKDIR /var/lib/advocacy
USER advocacy

# A container's address is its network's: listen on every interface of the container
# (docker-compose.yml publishes the port on the host's 127.0.0.1 only).
ENV ADVOCACY_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 \
    ADVOCACY_WEB_PORT=6066 \
    ADVOCACY_WEB_BIND=0.0.0.0
EXPOSE 6066

# /health answers 200 only when the worker consumes and Redis answers.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ADVOCACY_WEB_PORT', '6066'), timeout=2)"]

CMD ["python", "-m", "stream", "worker"]
