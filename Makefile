# edgeagent — see README.md. Every target runs scripts/setup.sh first where it
# needs system packages, so a fresh Debian/Ubuntu machine needs only make.
SHELL := /bin/bash
GO := $(shell scripts/ensure-go.sh)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
PKGS := ./...
# Build tags of the full agent: camera work (OpenCV via gocv) and ONNX Runtime.
TAGS ?= gocv,onnx
FUZZTIME ?= 5s

.PHONY: all setup build build-full build-arm64 build-jetson sysroot test test-go test-arm64 lint fuzz validate-configs bench demo clean

all: build

setup:
	scripts/setup.sh

## build: the static agent (CGO_ENABLED=0) for this machine, in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/edgeagent ./cmd/edgeagent

## build-full: the full agent for this machine, with camera (gocv) and inference (onnx); needs cgo and OpenCV
## (on a Jetson: apt install libopencv-dev pkg-config first)
build-full:
	CGO_ENABLED=1 $(GO) build -trimpath -tags $(TAGS) -ldflags '$(LDFLAGS)' -o bin/edgeagent-full ./cmd/edgeagent

## build-arm64: the static agent for 64-bit ARM (Jetson, Raspberry Pi 4/5)
build-arm64:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/edgeagent-linux-arm64 ./cmd/edgeagent

# The full agent (camera and inference: cgo, GoCV against OpenCV 4.6,
# onnxruntime_go) needs C libraries, so it is built per target system:
# cross-compiled with Debian's aarch64 toolchain against an arm64 sysroot
# (build-jetson), or natively on the device (build-full).
SYSROOT ?= .cache/sysroot-arm64
S = $(abspath $(SYSROOT))
JETSON_ENV = CGO_ENABLED=1 GOOS=linux GOARCH=arm64 \
	CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ \
	PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR=$(S)/usr/lib/aarch64-linux-gnu/pkgconfig:$(S)/usr/share/pkgconfig \
	PKG_CONFIG_SYSROOT_DIR=$(S) \
	CGO_CFLAGS="--sysroot=$(S) -O2" CGO_CXXFLAGS="--sysroot=$(S) -O2" \
	CGO_LDFLAGS="--sysroot=$(S) -Wl,-rpath-link,$(S)/lib/aarch64-linux-gnu:$(S)/usr/lib/aarch64-linux-gnu"

## sysroot: the arm64 Debian sysroot (bookworm + libopencv-dev) that build-jetson links against; once, about 2-3 minutes
sysroot:
	scripts/jetson-sysroot.sh $(SYSROOT)

## build-jetson: the full agent (camera, inference; cgo) cross-compiled for arm64 against the sysroot
build-jetson: sysroot
	$(JETSON_ENV) $(GO) build -trimpath -tags $(TAGS) -ldflags '$(LDFLAGS)' -o bin/edgeagent-jetson-arm64 ./cmd/edgeagent

## test: set up, lint, run every test with the race detector, validate the example flows, fuzz briefly
test: setup lint test-go validate-configs fuzz test-arm64

test-go:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(GO) test -race -count=1 -timeout 20m -tags $(TAGS) ./inference/... ./processors/... ./internal/camera/...

## test-arm64: the static arm64 agent under qemu-user-static: version, validate, a GetFile -> PutFile flow
test-arm64:
	scripts/test-arm64.sh

lint:
	@out=$$($$(dirname $(GO))/gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags $(TAGS) $(PKGS)

validate-configs: build-full
	bin/edgeagent-full validate configs/*.yaml

## fuzz: run each fuzz target for FUZZTIME
fuzz:
	@set -e; for t in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$t/*_test.go | sed 's/func //'); do \
	    echo "fuzz $$t $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$t >/dev/null; \
	  done; done

## bench: throughput and memory against the raw limits, measured in the same run
bench: setup
	$(GO) run -tags $(TAGS) ./internal/bench
	$(GO) test -tags $(TAGS) -run '^$$' -bench ApplyONNXModel -benchtime 200x ./processors/

## demo: set up, build the full agent and run the demo flow on embedded defaults
demo: setup build-full
	bin/edgeagent-full demo

clean:
	rm -rf bin
