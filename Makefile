# The two README commands: `make run` and `make test`. Everything they need is installed here.
VENV ?= .venv
PY := $(VENV)/bin/python
# Debian packages the embedded stack and the tests use; installed when a binary is missing.
APT_PACKAGES := redis-server:redis-server prometheus:prometheus promtool:prometheus \
	prometheus-alertmanager:prometheus-alertmanager amtool:prometheus-alertmanager \
	docker-compose:docker-compose chromium:chromium java:openjdk-17-jre-headless mvn:maven \
	faketime:faketime wrk:wrk
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# Apache Kafka for the tests and benchmarks: the jars of deploy/kafka/pom.xml, fetched once
KAFKA_VERSION := $(shell sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/kafka/pom.xml)
KAFKA_LIBS := .cache/kafka-$(KAFKA_VERSION)/libs

.PHONY: run test test-unit bench bench-web soak compat-latest lint lock deps system kafka clean

# the image's locked dependencies first (same versions, hashes checked), then the dev tools
$(VENV)/.installed: pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements.lock
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

system:
	@missing=""; for pair in $(APT_PACKAGES); do \
	  bin=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$bin >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi; \
	for svc in redis-server prometheus prometheus-alertmanager; do \
	  $(SUDO) systemctl disable --now $$svc >/dev/null 2>&1 || true; \
	done

# a second run finds the stamp and downloads nothing; a changed POM fetches again
$(KAFKA_LIBS)/.fetched: deploy/kafka/pom.xml | system
	rm -rf $(KAFKA_LIBS)
	mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	  -DoutputDirectory=$(abspath $(KAFKA_LIBS))
	touch $@

kafka: $(KAFKA_LIBS)/.fetched

deps: $(VENV)/.installed system kafka

run: deps
	$(PY) -m stream stack $(if $(COLLAPSE),--collapse $(COLLAPSE),)

test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: deps
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# the benchmark's peers (Quix Streams) in a virtualenv of their own: never the service's dependencies
PEERS := .venv-peers
$(PEERS)/.installed: tests/bench/peers.txt
	python3 -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q -r tests/bench/peers.txt
	touch $@

# side-by-side throughput, freshness, start-up and memory on tansu and Apache Kafka; writes docs/benchmarks.md
# (BENCH_ARGS=--runs 1: ~20 min on a quiet 2-core machine with the 1M/5M-customer and Zipf rows; the default 3 runs about 45 min)
bench: deps $(PEERS)/.installed
	$(PY) -m tests.bench.run $(BENCH_ARGS)

# 200 clients polling /kpis and /metrics during a drain: the throughput and Redis commands they cost;
# writes the section "Endpoints under load" of docs/benchmarks.md (~30 min); the clients are Debian's wrk (BENCH_ARGS=--load python: aiohttp)
bench-web: deps
	$(PY) -m tests.bench.web_load $(BENCH_ARGS)

# the kill and rebalance scenarios again and again, outside `make test`: ROUNDS=30 make soak
# (the Redis Cluster failovers: SOAK_TESTS=tests/reliability/test_redis_cluster.py, with more events
# per round through RELIABILITY_CLUSTER_EVENTS=20000)
ROUNDS ?= 30
SOAK_TESTS ?= tests/reliability/test_uncommitted.py
soak: deps
	@mkdir -p soak-logs; pass=0; fail=0; for i in $$(seq 1 $(ROUNDS)); do \
	  if $(PY) -m pytest -q -p no:cacheprovider $(SOAK_TESTS) $(PYTEST_ARGS) > soak-logs/round-$$i.log 2>&1; \
	  then pass=$$((pass + 1)); else fail=$$((fail + 1)); echo "round $$i FAILED: soak-logs/round-$$i.log"; fi; \
	  echo "round $$i of $(ROUNDS): $$pass passed, $$fail failed"; \
	done; test $$fail -eq 0

# the newest faust-streaming and aiokafka releases in a scratch venv (run it on a schedule): do the
# internals stream/compat.py checks still exist, and does the batch consumer still behave?
compat-latest:
	python3 -m venv .venv-latest
	.venv-latest/bin/pip install -q --upgrade pip
	.venv-latest/bin/pip install -q -e '.[dev]'
	.venv-latest/bin/pip install -q --upgrade faust-streaming aiokafka mode-streaming
	.venv-latest/bin/pip list 2>/dev/null | grep -iE '^(faust-streaming|aiokafka|mode-streaming) '
	.venv-latest/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_compat.py tests/unit/test_batching.py

lint: deps
	$(VENV)/bin/ruff check stream tests
	$(VENV)/bin/mypy stream

# requirements.lock: the image's exact dependencies with their hashes (uv from PyPI, any platform)
lock: deps
	$(PY) -m pip install -q uv
	$(VENV)/bin/uv pip compile pyproject.toml --group build --universal --python-version 3.11 \
	  --generate-hashes --custom-compile-command "make lock" -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
