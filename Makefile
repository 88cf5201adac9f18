# make test: vet and every test with the race detector (the product's, then
# the benchmark harness's smoke run), against the Mosquitto on
# 127.0.0.1:1883 and the Redis on 127.0.0.1:6379 (see README.md).
GO ?= go

.PHONY: test check vet web-deps fuzz build run chaos bench-smoke

test: vet web-deps
	$(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) bench-smoke

# make check: the fast tier, after every change (under a minute): vet and
# go test -short, which leaves out the multi-process fleets, Redis Sentinel
# and Cluster, the browser and Node tests, the rolling restart and chaos
# (testenv.Long). It still needs the Mosquitto and the Redis of make test.
check: vet
	$(GO) test -short -count=1 ./...

vet:
	$(GO) vet ./...
	cd bench && $(GO) vet ./...

# The benchmark harness (bench/, its own module) builds the bridge and runs
# each scenario briefly: it still works. No timing is asserted.
bench-smoke:
	cd bench && $(GO) test -race -count=1 -timeout 10m ./...

# What the browser tests of web/ need (web/e2e_test.go skips without it):
# the npm packages pinned in web/e2e/package-lock.json and, installed only
# when running as root and missing, Debian's Chromium.
web-deps:
	npm ci --prefix web/e2e --no-audit --no-fund
	@if [ "$$(id -u)" = 0 ] && [ ! -e /usr/bin/chromium ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi

build:
	$(GO) build -o bin/mqttbridge ./cmd/mqttbridge

run:
	$(GO) run ./cmd/mqttbridge

# Each fuzz target for a short while (go test runs their seeds in make test).
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzValidateName -fuzztime=30s ./bridge/topic/
	$(GO) test -run='^$$' -fuzz=FuzzValidateFilter -fuzztime=30s ./bridge/topic/
	$(GO) test -run='^$$' -fuzz=FuzzMatchTrie -fuzztime=30s ./bridge/topic/
	$(GO) test -run='^$$' -fuzz=FuzzOverlap -fuzztime=30s ./bridge/topic/
	$(GO) test -run='^$$' -fuzz=FuzzCoveredBy -fuzztime=30s ./bridge/topic/
	$(GO) test -run='^$$' -fuzz=FuzzPattern -fuzztime=30s ./bridge/acl/
	$(GO) test -run='^$$' -fuzz=FuzzToken -fuzztime=30s ./internal/auth/
	$(GO) test -run='^$$' -fuzz=FuzzClientPackets -fuzztime=30s ./wsproxy/
	$(GO) test -run='^$$' -fuzz=FuzzSplit -fuzztime=30s ./internal/mqttpacket/

# The chaos run of docs/architecture.md (not part of make test): three
# instances, private Mosquitto and Redis, random faults for CHAOS (default
# 3m), then a history check. CHAOS_SEED repeats a run; CHAOS_REDIS_KILL=1
# adds kill -9 of Redis.
CHAOS ?= 3m
chaos:
	MQTTBRIDGE_CHAOS=$(CHAOS) MQTTBRIDGE_CHAOS_SEED=$(CHAOS_SEED) MQTTBRIDGE_CHAOS_REDIS_KILL=$(CHAOS_REDIS_KILL) \
		$(GO) test -count=1 -timeout 30m -run '^TestChaos$$' -v ./cmd/mqttbridge/
