# edged — common tasks.  `make run` and `make test` work on a fresh Debian / Raspberry Pi OS.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# `make run` needs only a working venv (Debian splits ensurepip into python3-venv);
# the tests also start real brokers (mosquitto), make TLS certificates (openssl) and build a
# fake Edge TPU delegate (gcc, libc6-dev); GStreamer's RTSP server (the system python3-gi,
# x264 from plugins-ugly) and ffmpeg serve the camera streams of tests/integration/test_stream.py;
# picamera2 from PyPI (the AI camera's tests) builds python-prctl, which needs libcap-dev and
# python3-dev, and its IMX500 class loads the libarchive C library (through libarchive-c):
# libarchive-tools brings it under the library's name of each release (libarchive13 up to
# Debian 12, libarchive13t64 from Debian 13), which a fresh minbase root lacks
APT_RUN := python3-venv
APT_TEST := $(APT_RUN) mosquitto mosquitto-clients openssl gcc libc6-dev \
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
  gstreamer1.0-plugins-ugly ffmpeg libcap-dev python3-dev libarchive-tools
# `make run FRAMES=8` stops the demo after 8 classified frames
FRAMES ?=
# `make test TESTS=tests/unit` runs only those
TESTS ?= tests/unit tests/integration
# pip for the editable install; setuptools' note that an editable install maps edged.models
# to models/ through an import finder is information, not a problem
PIP := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip --disable-pip-version-check
# tests keep their bytecode (__pycache__, ignored by git) even where the environment says not
# to write it: without it every run compiles edged and the tests again (about 1.3 s)
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/pytest

.PHONY: run venv venv-run venv-learn venv-ha system-deps system-deps-run test test-unit test-integration \
	test-deploy lint format bench clean deb

# apt_install(packages): install the missing ones (with sudo unless root), or say which
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null || { [ -n "$(SUDO)" ] && ! command -v sudo >/dev/null; }; then \
	    echo "edged needs these system packages:$$missing (apt-get install$$missing)" >&2; exit 1; \
	  fi; \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing \
	    || { echo "could not install:$$missing (apt-get install$$missing)" >&2; exit 1; }; \
	fi
endef

# The venv for running: edged with its embedded broker (amqtt).  `python3 -m venv --help`
# works without ensurepip, so ask for ensurepip itself.
$(VENV)/.run: pyproject.toml setup.py
	@$(PYTHON) -c 'import ensurepip' >/dev/null 2>&1 || $(MAKE) --no-print-directory system-deps-run
	@[ -x $(BIN)/pip ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[broker]'
	@touch $@

# ... and for developing: the test and lint tools on top.  systemd-python (journald
# fields) is optional and builds from source: installed where libsystemd-dev is present.
# picamera2 (the real one, under the simulated AI camera of tests/fakes/imx500_api) where it
# builds; without it those tests skip, saying so.
$(VENV)/.dev: $(VENV)/.run
	$(PIP) install --quiet -e '.[dev]'
	@$(PIP) install --quiet -e '.[dev,aicamera-test]' >/dev/null 2>&1 \
	  || echo "note: picamera2 did not install (it builds python-prctl: needs libcap-dev," \
	    "python3-dev and gcc); the AI camera tests skip"
	@if pkg-config --exists libsystemd 2>/dev/null; then \
	  $(PIP) install --quiet -e '.[dev,systemd]' >/dev/null 2>&1 \
	    || echo "note: systemd-python did not build (optional; needs python3-dev and gcc)"; \
	fi
	@touch $@

venv-run: $(VENV)/.run
venv: $(VENV)/.dev

# ... and the `learn` extra (PyTorch, litert-torch: about 2 GB, 3 minutes) for
# `edged train --recipe deep` and its test.  torch first, alone, so that nothing pulls a
# CUDA build; where pip is pointed at a CPU wheel (find-links, or PyTorch's CPU index) it takes it.
$(VENV)/.learn: $(VENV)/.dev
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev,learn]'
	@touch $@

venv-learn: $(VENV)/.learn

# ... and Home Assistant (2025.4, headless) for the real Home Assistant tests
# (tests/integration/test_homeassistant_real.py): a venv of its own, since it needs Python
# 3.13 (a pyenv 3.13, else python3.13 on the PATH); with what it would otherwise install at its
# first start (the tests start it with --skip-pip): its MQTT integration's paho-mqtt, and the
# frontend, without which it starts in recovery mode.  About 800 MB and a few minutes.
# Without Python 3.13 it says so and those tests skip.
HA_VENV ?= .venv-ha
HA_VERSION := 2025.4.4
HA_REQUIREMENTS := homeassistant==$(HA_VERSION) paho-mqtt==2.1.0 \
  home-assistant-frontend==20250411.0
PYTHON313 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python) \
  $(shell command -v python3.13 2>/dev/null))

$(HA_VENV)/.ha: Makefile
	@[ -x $(HA_VENV)/bin/pip ] || $(PYTHON313) -m venv $(HA_VENV)
	$(HA_VENV)/bin/pip install --quiet --disable-pip-version-check $(HA_REQUIREMENTS)
	@touch $@

venv-ha:
ifeq ($(strip $(PYTHON313)),)
	@echo "note: no Python 3.13 (python3.13, ~/.pyenv/versions/3.13*): Home Assistant is not" \
	  "installed and the real Home Assistant tests skip"
else
	@$(MAKE) --no-print-directory $(HA_VENV)/.ha PYTHON313=$(PYTHON313)
endif

## run: the daemon on its embedded defaults (bundled model, sample photos, embedded broker)
run: venv-run
	$(BIN)/edged demo $(if $(FRAMES),--frames $(FRAMES))

## system-deps: Debian packages the tests need (mosquitto, openssl, gcc, python3-venv, an RTSP server, ffmpeg)
system-deps:
	$(call apt_install,$(APT_TEST))

system-deps-run:
	$(call apt_install,$(APT_RUN))

## test: unit and integration tests (a real mosquitto is started by the tests)
test: system-deps venv
	$(PYTEST) -q $(TESTS)

test-unit: venv
	$(PYTEST) -q tests/unit

## test-deploy: systemd containers, Ansible runs and the unit's checks (root; deploy/ci-setup.sh first)
test-deploy: venv
	EDGED_REQUIRE_DEPLOY=1 $(BIN)/pytest -q -m deploy tests/deploy

## deb: edged_<version>_<arch>.deb in dist/ for this machine's architecture and Debian release
## (SUITE=bookworm|trixie, DEB_ARCH=arm64|amd64 to choose; deploy/build-deb.sh); the venv's pip
## downloads the wheels, so a fresh Raspberry Pi OS needs no python3-pip
DEB_ARCH ?= $(shell dpkg --print-architecture 2>/dev/null)
SUITE ?= $(shell . /etc/os-release 2>/dev/null && echo $$VERSION_CODENAME)
deb: venv-run
	PYTHON=$(abspath $(BIN))/python deploy/build-deb.sh $(DEB_ARCH) $(SUITE)

lint: venv
	$(BIN)/ruff check edged tests bench models
	$(BIN)/ruff format --check edged tests bench models
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format edged tests bench models
	$(BIN)/ruff check --fix edged tests bench models

bench: venv
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) $(HA_VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
