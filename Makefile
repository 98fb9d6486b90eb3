# Singyeong — build, run, test.
#   make run    release build, one node on PORT (default 4000), no Redis
#   make test   unit tests (swift test) + integration tests against the real binary
# Debian packages are installed by `make deps` (run automatically) only when missing.

SWIFT       ?= swift
PYTHON      ?= python3
VENV        := .venv
VENV39      := .venv39
# pyenv's interpreter directly (its shim refuses unless 3.9 is selected), else python3.9 on PATH.
PYTHON39    ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.9*/bin/python3.9 /root/.pyenv/versions/3.9*/bin/python3.9) python3.9)
FUZZ_SECONDS ?= 60

# Build needs: libev, hiredis, OpenSSL headers. Tests also need the openssl CLI,
# Python's venv module, and redis-server (cluster tests).
BUILD_PACKAGES := libev-dev libhiredis-dev libssl-dev libsimdjson-dev pkg-config libcurl4-openssl-dev
TEST_PACKAGES  := openssl redis-server python3-venv procps iptables iproute2

.PHONY: all deps deps-build deps-test build release run test unit-test integration-test fuzz bench lint clean deps-deb deb test-deb

all: build

deps: deps-build deps-test

deps-build:
	@missing=""; for p in $(BUILD_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

deps-test:
	@missing=""; for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	@test -x $(VENV)/bin/pytest || ($(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -q -r Tests/integration/requirements.txt)
	@# singyeong.py 1.0.1 needs websockets 8.1, which runs on Python 3.9 (pyenv's copy on these machines;
	@# Debian 12 has no python3.9 package). Without one, its compatibility tests skip, saying so.
	@test -x $(VENV39)/bin/python || ! command -v $(PYTHON39) >/dev/null 2>&1 || \
	  ($(PYTHON39) -m venv $(VENV39) && $(VENV39)/bin/pip install -q -r Tests/integration/requirements-py39.txt)
	@test -x $(VENV39)/bin/python || echo "note: no Python 3.9 ($(PYTHON39)): the singyeong.py compatibility tests will skip (install Python 3.9, e.g. with pyenv, or set PYTHON39)"

build: deps-build
	$(SWIFT) build

release: deps-build
	$(SWIFT) build -c release

run: release
	.build/release/singyeong

test: deps build
	$(SWIFT) test
	SINGYEONG_BIN=$(CURDIR)/.build/debug/singyeong $(VENV)/bin/pytest -q Tests/integration

unit-test: deps-build
	$(SWIFT) test

integration-test: deps build
	SINGYEONG_BIN=$(CURDIR)/.build/debug/singyeong $(VENV)/bin/pytest -q Tests/integration

# libFuzzer targets for every parser of network bytes (scripts/fuzz.sh lists
# them), FUZZ_SECONDS each.
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

# Idle-connection memory, accept rate, gateway throughput (release build); see BENCHMARKS.md.
bench: release deps-test
	$(VENV)/bin/python scripts/bench_idle_connections.py --binary .build/release/singyeong
	scripts/bench_gateway.sh

lint:
	$(SWIFT) format lint --recursive Sources Tests
	python3 scripts/check_layers.py

clean:
	rm -rf .build .build-fuzz $(VENV) $(VENV39)

# Debian package (debian/): `make deb` builds dist/singyeong_<version>_<arch>.deb
# (release build, Swift runtime linked statically, scratch path .build-deb,
# Swift from /opt/swift); `make test-deb` builds, lints, installs, runs, stops
# and purges it (scripts/test_deb.sh; root).
DEB_PACKAGES := debhelper dpkg-dev fakeroot help2man lintian systemd curl util-linux procps python3 debootstrap

deps-deb:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

deb: deps-build deps-deb
	@mkdir -p dist
	@v=$$(dpkg-parsechangelog -S Version) && a=$$(dpkg --print-architecture) && \
	DEB_DESTDIR=$(CURDIR)/dist dpkg-buildpackage -b -us -uc --post-clean \
	  --buildinfo-file=$(CURDIR)/dist/singyeong_$${v}_$${a}.buildinfo --buildinfo-option=-u$(CURDIR)/dist \
	  --changes-file=$(CURDIR)/dist/singyeong_$${v}_$${a}.changes --changes-option=-u$(CURDIR)/dist
	@ls -l dist/*.deb

test-deb: deps-build deps-deb
	scripts/test_deb.sh
