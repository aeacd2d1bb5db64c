# The advocacy worker image: `python -m stream worker` (CONTRACT.md section 5).
# Configuration is environment only (ADVOCACY_*, see docs/configuration.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY stream ./stream
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/advocacy --create-home advocacy

# Faust keeps a small data directory in the working directory: make it the user's own.
WORKDIR /var/lib/advocacy
USER advocacy

ENV ADVOCACY_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 \
    ADVOCACY_REDIS_URL=redis://redis:6379/0 \
    ADVOCACY_WEB_PORT=6066 \
    ADVOCACY_WEB_BIND=0.0.0.0
EXPOSE 6066

# /health answers 200 only when the worker consumes and Redis answers.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ADVOCACY_WEB_PORT', '6066'), timeout=2)"]

CMD ["python", "-m", "stream", "worker"]
