# edged — common tasks.  `make run` and `make test` work on a fresh Debian / Raspberry Pi OS.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# libsystemd-dev, pkg-config and python3-dev build systemd-python (the dev extras);
# GStreamer's RTSP server (system python3-gi, x264 from plugins-ugly) and ffmpeg serve the
# camera streams of tests/integration/test_stream.py
APT_PACKAGES := python3-venv python3-dev mosquitto mosquitto-clients openssl gcc pkg-config libsystemd-dev \
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
  gstreamer1.0-plugins-ugly ffmpeg

.PHONY: run venv system-deps test test-unit test-integration test-deploy lint format bench clean

$(BIN)/edged: pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || $(MAKE) system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

venv: $(BIN)/edged

## run: the daemon on its embedded defaults (bundled model, sample photos, embedded broker)
run: venv
	$(BIN)/edged demo

## system-deps: Debian packages the tests need (mosquitto, openssl, gcc, venv, libsystemd-dev,
##   GStreamer's RTSP server, ffmpeg)
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

## test: unit and integration tests (a real mosquitto is started by the tests)
test: system-deps venv
	$(BIN)/pytest -q tests/unit tests/integration

test-unit: venv
	$(BIN)/pytest -q tests/unit

## test-deploy: systemd containers, Ansible runs and the unit's checks (root; deploy/ci-setup.sh first)
test-deploy: venv
	EDGED_REQUIRE_DEPLOY=1 $(BIN)/pytest -q -m deploy tests/deploy

lint: venv
	$(BIN)/ruff check edged tests bench models
	$(BIN)/ruff format --check edged
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format edged
	$(BIN)/ruff check --fix edged tests bench models

bench: venv
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
