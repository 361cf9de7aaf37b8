# strata: see README.md. `make demo` shows a union at work; `make test` runs
# every test (as root on Debian it first installs what the tests need).

GO      ?= go
PREFIX  ?= /usr/local
BIN     := bin/strata
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# Go's standard install location, for shells that do not have it on PATH.
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build test lint deps unit integration demo bench install clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/strata

deps:
	./scripts/install-deps

lint:
	@unformatted="$$(gofmt -l .)"; if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Unit tests (no mount) and integration tests (real mounts; they skip with a
# reason without root or /dev/fuse, and fail instead when CI=true).
test: deps lint
	$(GO) test -race -count=1 -timeout 30m ./...

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

integration: deps
	$(GO) test -race -count=1 -timeout 30m -v ./integration/

demo: build
	./$(BIN) demo

# Library-level benchmarks for now; the side-by-side comparison with kernel
# overlay and the FUSE peers is tracked separately (see docs/PERFORMANCE.md).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./branches/

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/strata

clean:
	rm -rf bin
