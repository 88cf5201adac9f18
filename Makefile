# make test: vet and every test with the race detector, against the Mosquitto
# on 127.0.0.1:1883 and the Redis on 127.0.0.1:6379 (see README.md).
GO ?= go

.PHONY: test vet fuzz build run bench-smoke

test: vet
	$(GO) test -race -count=1 -timeout 15m ./...

vet:
	$(GO) vet ./...

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
