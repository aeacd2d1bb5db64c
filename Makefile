# The two README commands: `make run` and `make test`. Everything they need is installed here.
VENV ?= .venv
PY := $(VENV)/bin/python
# Debian packages the embedded stack and the tests use; installed when a binary is missing.
APT_PACKAGES := redis-server:redis-server prometheus:prometheus promtool:prometheus \
	prometheus-alertmanager:prometheus-alertmanager amtool:prometheus-alertmanager \
	docker-compose:docker-compose chromium:chromium java:openjdk-17-jre-headless mvn:maven \
	faketime:faketime gcc:gcc
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# Apache Kafka for the tests and benchmarks: the jars of deploy/kafka/pom.xml, fetched once
KAFKA_VERSION := $(shell sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/kafka/pom.xml)
KAFKA_LIBS := .cache/kafka-$(KAFKA_VERSION)/libs

.PHONY: run test test-pure test-unit bench bench-hot bench-web soak compat-latest lint lock deps system kafka clean

# the image's locked dependencies first (same versions, hashes checked), then the dev tools; the
# project is built with the locked build tools (setuptools, mypy): mypyc compiles the hot path (setup.py)
$(VENV)/.installed: pyproject.toml requirements.lock setup.py | system
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements.lock
	$(PY) -m pip install -q --no-build-isolation -e '.[dev]'
	touch $@ $(VENV)/.compiled $(wildcard stream_hot__mypyc.*.so)

# the compiled hot path (stream.HOT_PATH) built again when one of its modules changed since the last
# build: an edited module never runs as its stale compiled self (none built, no C compiler: pure Python).
# mypyc puts the code in one library, stream_hot__mypyc.*.so, touched as the build's time: the modules'
# own small .so files are loaders that stay as they were.
HOT_SOURCES := stream/event.py stream/contract.py stream/timestamps.py stream/events.py stream/kpi/windows.py \
	stream/kpi/record.py stream/kpi/step.py stream/kpi/cap.py stream/kpi/totals.py stream/codec.py
$(VENV)/.compiled: $(HOT_SOURCES) $(VENV)/.installed
	@if ls stream_hot__mypyc.*.so >/dev/null 2>&1; then echo "compiling the hot path again"; \
	  $(PY) -m pip install -q --no-deps --no-build-isolation -e . && touch stream_hot__mypyc.*.so; fi
	touch $@

system:
	@missing=""; for pair in $(APT_PACKAGES); do \
	  bin=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$bin >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
	  || missing="$$missing python3-dev"; \
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

deps: system $(VENV)/.installed $(VENV)/.compiled kafka

run: deps
	$(PY) -m stream stack $(if $(COLLAPSE),--collapse $(COLLAPSE),)

# the hot path's unit and property tests once more on the pure-Python modules (~50 s); the
# whole suite then runs on what the install built (compiled: tests/unit/test_hot_path.py)
PURE_TESTS := tests/unit/test_hot_path.py tests/unit/test_events.py tests/unit/test_kpi.py tests/unit/test_kpi_cap.py \
	tests/unit/test_kpi_change.py tests/unit/test_kpi_huge.py tests/unit/test_edges_property.py
test-pure: deps
	ADVOCACY_PURE_PYTHON=1 $(PY) -m pytest -q $(PURE_TESTS) $(PYTEST_ARGS)

test: test-pure
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: test-pure
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# the hot path's cost per event, pure Python and compiled (tests/bench/parse_speed.py, step_speed.py),
# and in instructions counted by valgrind (stable on a loaded machine); figures in docs/benchmarks-notes.md
bench-hot: deps
	@command -v valgrind >/dev/null || $(SUDO) apt-get install -y -qq --no-install-recommends valgrind >/dev/null
	for pure in 1 0; do \
	  ADVOCACY_PURE_PYTHON=$$pure $(PY) -m tests.bench.parse_speed && ADVOCACY_PURE_PYTHON=$$pure $(PY) -m tests.bench.step_speed \
	  && ADVOCACY_PURE_PYTHON=$$pure $(PY) -m tests.bench.instructions || exit 1; \
	done

# the benchmark's peers (Quix Streams) in a virtualenv of their own: never the service's dependencies
PEERS := .venv-peers
$(PEERS)/.installed: tests/bench/peers.txt
	python3 -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q -r tests/bench/peers.txt
	touch $@

# side-by-side throughput, freshness, start-up and memory on tansu and Apache Kafka; writes docs/benchmarks.md
# (BENCH_ARGS=--runs 1: 12 min on 2 loaded cores; the default 3 runs about 30 min there, less on a quiet machine)
bench: deps $(PEERS)/.installed
	$(PY) -m tests.bench.run $(BENCH_ARGS)

# 200 clients polling /kpis and /metrics during a drain: the throughput and Redis commands they cost;
# writes the section "Endpoints under load" of docs/benchmarks.md (~30 min)
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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info stream_hot__mypyc.*.so
	find stream -name '*.so' -delete
