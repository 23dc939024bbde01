# gitedge — build, test and benchmark. `make test` is what CI runs (.ci/run).
# Everything the tests need that is missing is installed with apt-get
# (Debian): git, keepalived, iproute2, haproxy, openssh-server, gnupg,
# systemd (systemd-analyze), adduser and init-system-helpers (the package's
# maintainer scripts), frr (the upstream router of the bgp package's
# namespace tests), chromium (the status page's browser test, which saves
# its screenshots in bin/artifacts/), and for the benchmark's smoke test
# nginx, its stream module, caddy and wrk.

SHELL      := /bin/bash
GO         ?= go
BIN        := bin/gitedge
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT     ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS    := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(BUILD_DATE)
# Debian packages the tests use; installed only when missing.
TEST_PKGS  := git keepalived iproute2 haproxy openssh-server openssh-client gnupg curl procps \
              systemd adduser init-system-helpers nginx libnginx-mod-stream caddy wrk frr chromium
BENCH_PKGS := haproxy nginx libnginx-mod-stream caddy wrk
# BENCH_FLAGS are passed to `go run ./bench run` (see its -h), e.g.
# BENCH_FLAGS="-rounds 5 -out /tmp/bench-results".
BENCH_FLAGS ?=
FUZZTIME   ?= 10s
# Release artifacts: dist/gitedge_<debian version>_<arch>.deb,
# dist/gitedge_<version>_linux_<arch>.tar.gz and dist/SHA256SUMS.
DIST           := dist
DEB_ARCH       ?= $(shell $(GO) env GOARCH)
RELEASE_ARCHES := amd64 arm64
# Every file in the artifacts carries the commit's time.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
PACKAGE    = $(GO) run ./packaging/build
# NETPOLL=fifo (the default) builds gitedge with Go's netpoller keeping the
# order in which epoll reports ready sockets: a patch of a few lines to the
# runtime's netpoll_epoll.go, compiled with `go build -overlay` from a copy
# in bin/netpoll (internal/netpollorder; why: docs/benchmarks.md, Round 15).
# NETPOLL=stock builds with the runtime as it is. `gitedge version` says
# which a binary has.
NETPOLL ?= fifo
# go-build runs `$(1) go build $(2)`, with the overlay when NETPOLL=fifo
# (the overlay's writer runs for this machine, whatever GOOS and GOARCH
# the build is for).
go-build = flags=""; case "$(NETPOLL)" in \
	fifo) flags=$$(env -u GOOS -u GOARCH GO=$(GO) $(GO) run ./internal/netpollorder/overlay "$(CURDIR)/bin/netpoll") || exit 1;; \
	stock) ;; \
	*) echo "NETPOLL=$(NETPOLL): want fifo or stock"; exit 2;; \
	esac; (set -x; $(1) $(GO) build $${flags:+"$$flags"} $(2))
# release-binary builds dist/linux_$(1)/gitedge: the flags of `make build`,
# static (CGO_ENABLED=0) so the package needs no libc and arm64 cross-builds.
release-binary = $(call go-build,CGO_ENABLED=0 GOOS=linux GOARCH=$(1),-ldflags "$(LDFLAGS)" -o $(DIST)/linux_$(1)/gitedge ./cmd/gitedge)

.PHONY: all build test unit lint fuzz e2e bench bench-slices bench-smoke bench-dataplane bench-failover bench-gitsource demo deps bench-deps clean deb release

all: build

# build checks that a binary it can run has the netpoll order asked for.
build:
	@$(call go-build,,-ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/gitedge)
	@want=$$(case "$(NETPOLL)" in fifo) echo FIFO;; *) echo LIFO;; esac); \
	if [ "$$($(GO) env GOOS GOARCH)" = "$$($(GO) env GOHOSTOS GOHOSTARCH)" ] && [ "$$($(GO) env GOOS)" = linux ]; then \
		$(BIN) version | grep -q "netpoll $$want)" || { echo "$(BIN): $$($(BIN) version): want netpoll $$want"; exit 1; }; \
	fi

# deps installs the Debian packages named in TEST_PKGS that are missing.
deps:
	@missing=""; for p in $(TEST_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# bench-deps installs the Debian packages named in BENCH_PKGS that are
# missing: as root directly, otherwise through sudo; without sudo it says
# what to install and fails.
bench-deps:
	@missing=""; for p in $(BENCH_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		sudo=""; \
		if [ "$$(id -u)" != 0 ]; then \
			if command -v sudo >/dev/null 2>&1; then \
				sudo=sudo; echo "bench-deps: not root: installing$$missing with sudo"; \
			else \
				echo "bench-deps: missing$$missing; not root and no sudo: install them as root with"; \
				echo "  apt-get install --no-install-recommends$$missing"; \
				exit 1; \
			fi; \
		else \
			echo "bench-deps: installing$$missing"; \
		fi; \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# test: lint, every unit and integration test with the race detector, the
# namespace and keepalived tests (as root), and a short run of every fuzzer.
test: deps lint unit fuzz e2e

unit: build
	GITEDGE_TEST_ALL=1 $(GO) test -race -count=1 -timeout 15m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...
	$(GO) tool staticcheck ./...
	$(GO) tool staticcheck -tags e2e ./e2e/...
	@# macOS, where reviewers run validate and plan: everything builds and
	@# vets there (the Linux-only parts are *_linux.go, with stubs).
	GOOS=darwin $(GO) build ./...
	GOOS=darwin $(GO) vet ./...

# fuzz runs each fuzz target for FUZZTIME (scripts/fuzz.sh: one target per
# run; minimising a new input capped at 1s, as the 60s default let a large
# YAML seed take FuzzLoad's whole budget; Go 1.26's fuzz deadline race told
# apart from a finding, checked first by scripts/fuzz_selftest.sh).
fuzz:
	./scripts/fuzz_selftest.sh
	GO=$(GO) ./scripts/fuzz.sh $(FUZZTIME)

# e2e: multi-node tests in network namespaces, against the built binary.
e2e: build
	GITEDGE_TEST_ALL=1 GE_NETPOLL=$(NETPOLL) GE_E2E_FIGURES=$(CURDIR)/bin/e2e-figures.txt $(GO) test -count=1 -timeout 15m -tags e2e ./e2e/...
	@cat bin/e2e-figures.txt 2>/dev/null || true

# bench: the proxy's Go benchmarks (bench-dataplane), the reconcile
# benchmarks, then the proxy side by side with
# HAProxy, nginx and Caddy (bench/, docs/benchmarks.md): every scenario,
# one round of the throughput ones per proxy (4), about 13 minutes on two
# cores after the Go benchmarks; the table is printed and kept with the
# raw results.
bench: build bench-deps bench-dataplane
	$(GO) test -run '^$$' -bench . -benchmem ./reconcile/
	$(GO) run ./bench run -gitedge $(BIN) $(BENCH_FLAGS)

# bench-slices: the throughput scenarios with HAProxy, nginx and gitedge
# up at once, in 20 cycles of 2 s slices taken in turn (about 12
# minutes): the comparison that tells a few percent from the machine's
# noise (docs/benchmarks.md, Slices).
bench-slices: build bench-deps
	$(GO) run ./bench run -gitedge $(BIN) -proxies haproxy,nginx,gitedge -scenarios ka,close,tls-ka,tls-close,big -slices 20 $(BENCH_FLAGS)

# bench-smoke: the whole benchmark once, briefly, unpinned (about a
# minute); it also runs in `make test` as bench's TestSmoke.
bench-smoke: bench-deps
	$(GO) test -count=1 -run '^TestSmoke$$' ./bench/

# bench-gitsource: webhook received → new commit's files handed over, on
# loopback git http-backend, for a 10,000-file repository with 100 commits
# of history (built with git fast-import); reports the median, p90, clone
# time and the process's peak RSS (VmHWM). Targets: median < 150 ms, RSS <
# 100 MiB.
bench-gitsource: deps
	$(GO) test -run '^$$' -bench '^BenchmarkWebhookToFiles$$' -benchtime 100x -count 1 ./gitsource/

# bench-failover: the namespace lab's failure scenarios, GE_BENCH_RUNS times
# each (default 5), for gitedge and keepalived side by side, at VRRPv2 1 s
# and VRRPv3 100 ms; prints the table of client outage medians (as root).
bench-failover: build deps
	$(GO) test -tags e2e -run '^$$' -bench '^BenchmarkFailover$$' -benchtime 1x -timeout 60m ./e2e/

# bench-dataplane: the proxy's Go benchmarks. The keep-alive path must show
# 0 allocs/op, and routes=10000 stay within 5% of routes=10;
# BenchmarkNewConn gives allocations and CPU per new connection, then (with
# strace) system calls per new connection.
bench-dataplane:
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 -count 3 ./dataplane/...
	@if command -v strace >/dev/null; then \
		GITEDGE_BENCH_STRACE=1 $(GO) test -run '^$$' -bench '^BenchmarkNewConn$$' -benchmem -cpu 1 -benchtime 3000x ./dataplane/; \
	fi

demo: build
	./$(BIN) demo

# deb: the Debian package for this machine's architecture (DEB_ARCH=arm64
# for another), from the same sources as `make build`.
deb:
	$(call release-binary,$(DEB_ARCH))
	$(PACKAGE) deb --version $(VERSION) --arch $(DEB_ARCH) --binary $(DIST)/linux_$(DEB_ARCH)/gitedge --out $(DIST) --mtime $(SOURCE_DATE_EPOCH)

# release: for linux/amd64 and linux/arm64, the .deb and a tar.gz holding the
# binary, the unit, the example config, README.md, docs/ and LICENSE; then
# SHA256SUMS over all of them (check with `sha256sum -c SHA256SUMS`).
release:
	rm -rf $(DIST)
	set -e; for arch in $(RELEASE_ARCHES); do \
		$(call release-binary,$$arch); \
		for kind in deb archive; do \
			$(PACKAGE) $$kind --version $(VERSION) --arch $$arch --binary $(DIST)/linux_$$arch/gitedge --out $(DIST) --mtime $(SOURCE_DATE_EPOCH); \
		done; \
	done
	$(PACKAGE) sums $(DIST)

clean:
	rm -rf bin $(DIST)

# bench-infra: the Proxmox reconciler against the simulator with 20 ms of
# latency per API call: a steady-state pass over 200 VMs (target < 2 s, no
# writes) and creating 20 VMs (default concurrency 4, each cloned once).
.PHONY: bench-infra
bench-infra:
	$(GO) test -run '^$$' -bench . -benchtime 5x ./infra/
