# edged: build, test, benchmark and cross-compile.
# Every target works on a fresh Debian machine with Go installed.

GO       ?= go
PKG      := ./...
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo none)
# The commit time, not the wall clock, so that builds are reproducible.
DATE     ?= $(shell git log -1 --format=%cI 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
DIST     := dist
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build test test-race bench bench-go bench-e2e cross lint fuzz clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/edged ./cmd/edged

test:
	$(GO) test -count=1 $(PKG)

test-race:
	$(GO) test -race -count=1 $(PKG)

# Benchmarks: Go micro-benchmarks, then the end-to-end scripts.
# Figures go into BENCHMARKS.md with the command that produced them.
bench: bench-go bench-e2e

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./pipeline ./sensors ./internal/sketch

bench-e2e: build
	./scripts/bench-batch.sh $(DIST)/edged

# Static binaries for the gateways: arm64, armv7 (Pi 2/3, 32-bit OS),
# armv6 (Pi Zero/1) and amd64.
cross:
	@mkdir -p $(DIST)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64         $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/edged-linux-arm64 ./cmd/edged
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7   $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/edged-linux-armv7 ./cmd/edged
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6   $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/edged-linux-armv6 ./cmd/edged
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64         $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/edged-linux-amd64 ./cmd/edged
	@ls -l $(DIST)/edged-linux-* | awk '{printf "%-28s %6.2f MiB\n", $$9, $$5/1048576}'

lint:
	$(GO) vet $(PKG)
	GOARCH=arm $(GO) vet $(PKG)
	$(GO) run $(STATICCHECK) $(PKG)

# A short run of every fuzz target (go test allows one target per run).
FUZZTIME ?= 20s
fuzz:
	@for t in $$($(GO) test -list 'Fuzz.*' ./sensors | grep ^Fuzz); do \
		echo "== sensors $$t"; $(GO) test ./sensors -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done
	@for t in $$($(GO) test -list 'Fuzz.*' ./internal/sketch | grep ^Fuzz); do \
		echo "== sketch $$t"; $(GO) test ./internal/sketch -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done

clean:
	rm -rf $(DIST)
