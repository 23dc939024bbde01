# gitedge — build, test and benchmark. `make test` is what CI runs (.ci/run).
# Everything the tests need that is missing is installed with apt-get
# (Debian): git, keepalived, iproute2, haproxy, openssh-server, gnupg, and
# for the benchmark's smoke test nginx, its stream module, caddy and wrk.

SHELL      := /bin/bash
GO         ?= go
BIN        := bin/gitedge
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT     ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS    := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(BUILD_DATE)
# Debian packages the tests use; installed only when missing.
TEST_PKGS  := git keepalived iproute2 haproxy openssh-server openssh-client gnupg curl procps nginx libnginx-mod-stream caddy wrk
BENCH_PKGS := haproxy nginx libnginx-mod-stream caddy wrk
# BENCH_FLAGS are passed to `go run ./bench run` (see its -h), e.g.
# BENCH_FLAGS="-rounds 5 -out /tmp/bench-results".
BENCH_FLAGS ?=
FUZZTIME   ?= 10s

.PHONY: all build test unit lint fuzz e2e bench bench-smoke bench-dataplane bench-failover bench-gitsource demo deps bench-deps clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/gitedge

# deps installs the Debian packages named in TEST_PKGS that are missing.
deps:
	@missing=""; for p in $(TEST_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

bench-deps:
	@missing=""; for p in $(BENCH_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# test: lint, every unit and integration test with the race detector, the
# namespace and keepalived tests (as root), and a short run of every fuzzer.
test: deps lint unit fuzz e2e

unit: build
	$(GO) test -race -count=1 -timeout 15m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# fuzz runs each fuzz target for FUZZTIME (go test allows one target per run).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# e2e: multi-node tests in network namespaces, against the built binary.
e2e: build
	$(GO) test -count=1 -timeout 15m -tags e2e ./e2e/...

# bench: the reconcile benchmarks, then the proxy side by side with
# HAProxy, nginx and Caddy (bench/, docs/benchmarks.md): every scenario,
# 3 rounds of the throughput ones, about 12 minutes on two cores; the
# table is printed and kept with the raw results.
bench: build bench-deps
	$(GO) test -run '^$$' -bench . -benchmem ./reconcile/
	$(GO) run ./bench run -gitedge $(BIN) $(BENCH_FLAGS)

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
# 0 allocs/op, and routes=10000 stay within 5% of routes=10.
bench-dataplane:
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 -count 3 ./dataplane/...

demo: build
	./$(BIN) demo

clean:
	rm -rf bin

# bench-infra: the Proxmox reconciler against the simulator with 20 ms of
# latency per API call: a steady-state pass over 200 VMs (target < 2 s, no
# writes) and creating 20 VMs (default concurrency 4, each cloned once).
.PHONY: bench-infra
bench-infra:
	$(GO) test -run '^$$' -bench . -benchtime 5x ./infra/
