# edgeagent — see README.md. Every target runs scripts/setup.sh first where it
# needs system packages, so a fresh Debian/Ubuntu machine needs only make.
SHELL := /bin/bash
GO := $(shell scripts/ensure-go.sh)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
PKGS := ./...
FUZZTIME ?= 5s

.PHONY: all setup build build-arm64 test test-go test-arm64 lint fuzz validate-configs bench demo clean

all: build

setup:
	scripts/setup.sh

## build: the static agent (CGO_ENABLED=0) for this machine, in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/edgeagent ./cmd/edgeagent

## build-arm64: the static agent for 64-bit ARM (Jetson, Raspberry Pi 4/5)
build-arm64:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/edgeagent-linux-arm64 ./cmd/edgeagent

## test: set up, lint, run every test with the race detector, validate the example flows, fuzz briefly
test: setup lint test-go validate-configs fuzz test-arm64

test-go:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

## test-arm64: the static arm64 agent under qemu-user-static: version, validate, a GetFile -> PutFile flow
test-arm64:
	scripts/test-arm64.sh

lint:
	@out=$$($$(dirname $(GO))/gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

validate-configs: build
	bin/edgeagent validate configs/*.yaml

## fuzz: run each fuzz target for FUZZTIME
fuzz:
	@set -e; for t in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$t/*_test.go | sed 's/func //'); do \
	    echo "fuzz $$t $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$t >/dev/null; \
	  done; done

## bench: throughput and memory against the raw limits, measured in the same run
bench: setup
	$(GO) run ./internal/bench

## demo: set up, build and run the demo flow on embedded defaults
demo: setup build
	bin/edgeagent demo

clean:
	rm -rf bin
