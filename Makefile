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
# TAGS are build tags: TAGS=kafka adds the Kafka output (make build
# TAGS=kafka, make cross TAGS=kafka, make deb TAGS=kafka). A tagged build's
# files carry the tag: dist/edged-kafka, edged-kafka-linux-arm64,
# edged-kafka_<version>_arm64.deb.
TAGS     ?=
empty    :=
space    := $(empty) $(empty)
VARIANT  := $(if $(strip $(TAGS)),-$(subst $(space),-,$(strip $(TAGS))))
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# test-arm: the packages it runs under qemu user emulation, and the emulators.
ARM_PKGS   := ./store/... ./pipeline/... ./internal/sketch/... ./sensors/...
QEMU_ARM   ?= $(firstword $(shell command -v qemu-arm-static qemu-arm 2>/dev/null) qemu-arm-static)
QEMU_ARM64 ?= $(firstword $(shell command -v qemu-aarch64-static qemu-aarch64 2>/dev/null) qemu-aarch64-static)

.PHONY: all build test test-kafka cross-default test-race test-crash test-integration test-arm bench bench-go bench-e2e bench-footprint bench-wear eval-detectors cross lint fuzz clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(DIST)/edged$(VARIANT) ./cmd/edged

# The README's test command: every package's tests, then the ARM pass when
# qemu-user-static is installed, then the firmware tests when mosquitto and
# socat are too (.ci/run installs all three): make test runs what make
# firmware-test runs, and says what it skips.
test:
	$(GO) test -count=1 $(PKG)
	$(MAKE) --no-print-directory test-kafka
	@if command -v $(QEMU_ARM) >/dev/null && command -v $(QEMU_ARM64) >/dev/null; then \
		$(MAKE) --no-print-directory test-arm test-armv6 || exit 1; \
		if command -v socat >/dev/null && test -x /usr/sbin/mosquitto; then \
			$(MAKE) --no-print-directory firmware-e2e || exit 1; \
		else echo "make test: SKIPPING the firmware tests (socat or /usr/sbin/mosquitto not installed; make firmware-test)"; fi; \
	else echo "make test: SKIPPING the ARM pass and the firmware tests (qemu-user-static not installed; make test-arm, make firmware-test)"; fi

# The kafka build: it compiles, and the Kafka output's and its config's
# tests pass (against franz-go's in-process Kafka, kfake).
test-kafka:
	$(GO) build -tags kafka ./...
	$(GO) test -count=1 -tags kafka ./uplink ./internal/config

test-race:
	$(GO) test -race -count=1 $(PKG)

# SIGKILL the real binary at random moments, 20 seeds in a row; a failure
# prints the -crash.seed that replays it.
test-crash:
	$(GO) test ./cmd/edged -run TestCrashRecovery -crash.seeds=20 -count=1 -v

# The tests that need root: a full disk (tmpfs, and ext4 on a loop device)
# under the store and under the real binary, then the store's on 32-bit ARM.
# make test runs them too, but skips them without root; here a skip fails.
test-integration:
	EDGED_INTEGRATION=1 $(GO) test -count=1 -v -run 'ENOSPC|Arm' ./store ./cmd/edged
	EDGED_INTEGRATION=1 GOARCH=arm GOARM=7 $(GO) test -count=1 -v -exec $(QEMU_ARM) -run 'ENOSPC|Arm' ./store

# The store, pipeline, sketch and decoder tests on 32-bit ARMv7 (Pi 2/3 on a
# 32-bit OS) and on arm64, under qemu user emulation (apt-get install
# qemu-user-static). On 2 cores: about 1 minute, 2 from a cold build cache.
test-arm:
	@command -v $(QEMU_ARM) >/dev/null && command -v $(QEMU_ARM64) >/dev/null || \
		{ echo "test-arm: $(QEMU_ARM) or $(QEMU_ARM64) not found: apt-get install qemu-user-static" >&2; exit 1; }
	GOARCH=arm GOARM=7 $(GO) test -count=1 -exec $(QEMU_ARM) $(ARM_PKGS)
	GOARCH=arm64 $(GO) test -count=1 -exec $(QEMU_ARM64) $(ARM_PKGS)

# Benchmarks: Go micro-benchmarks, then the end-to-end scripts.
# Figures go into BENCHMARKS.md with the command that produced them.
bench: bench-go bench-e2e

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./pipeline ./sensors ./internal/sketch

bench-e2e: build
	./scripts/bench-batch.sh $(DIST)/edged
	$(MAKE) --no-print-directory bench-footprint
	$(MAKE) --no-print-directory bench-wear

# The detector benchmark (issue 19): every detector on the SKAB pump test
# bed (cloned into ~/.cache/edged/SKAB, or $EDGED_SKAB) and the simulator's
# labelled anomalies, scored like the Numenta Anomaly Benchmark; about a
# minute on 2 cores.
eval-detectors:
	GO=$(GO) ./scripts/eval-detectors.sh

# Footprint (issue 7): binary sizes, RSS with 1,000 and 100,000 sensors,
# start to ready, CPU under qemu arm64; about 12 minutes on 2 cores.
bench-footprint: build cross
	./scripts/bench-footprint.sh $(DIST)

# SD-card wear: bytes written per second and per reading by edged run with
# 1,000 sensors, state every second against every 30 s; about 4 minutes.
bench-wear: build
	./scripts/bench-wear.sh $(DIST)/edged 1s 30s

# Static binaries for the gateways: arm64, armv7 (Pi 2/3, 32-bit OS),
# armv6 (Pi Zero/1) and amd64; then the same with the Kafka output
# (dist/edged-kafka-linux-*; the kafka build tag adds franz-go, about 4 MiB).
# make cross TAGS=kafka builds only the Kafka ones; cross-default only the
# default ones.
cross:
	@$(MAKE) --no-print-directory cross-default
	@if [ -z "$(TAGS)" ]; then $(MAKE) --no-print-directory cross-default TAGS=kafka; fi
	@ls -l $(DIST)/edged-linux-* $(DIST)/edged-kafka-linux-* 2>/dev/null | awk '{printf "%-34s %6.2f MiB\n", $$9, $$5/1048576}'

cross-default:
	@mkdir -p $(DIST)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64         $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(DIST)/edged$(VARIANT)-linux-arm64 ./cmd/edged
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7   $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(DIST)/edged$(VARIANT)-linux-armv7 ./cmd/edged
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6   $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(DIST)/edged$(VARIANT)-linux-armv6 ./cmd/edged
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64         $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(DIST)/edged$(VARIANT)-linux-amd64 ./cmd/edged

# The arm64 binary built twice, the second time with an empty build cache,
# must be byte for byte the same (-trimpath, commit date, no build paths).
.PHONY: repro
repro:
	@mkdir -p $(DIST)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/repro-a ./cmd/edged
	cache=$$(mktemp -d) && CGO_ENABLED=0 GOOS=linux GOARCH=arm64 GOCACHE=$$cache $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/repro-b ./cmd/edged; \
		st=$$?; rm -rf $$cache; exit $$st
	@sha256sum $(DIST)/repro-a $(DIST)/repro-b
	@cmp -s $(DIST)/repro-a $(DIST)/repro-b && echo "repro: identical" || { echo "repro: the two builds differ" >&2; exit 1; }

lint:
	@files=$$(gofmt -l .); if [ -n "$$files" ]; then echo "not gofmt-ed (run gofmt -w):"; echo "$$files"; exit 1; fi
	$(GO) vet $(PKG)
	GOARCH=arm $(GO) vet $(PKG)
	$(GO) vet -tags kafka ./uplink ./cmd/edged ./internal/config
	$(GO) run $(STATICCHECK) $(PKG)
	$(GO) run $(STATICCHECK) -tags kafka ./uplink ./cmd/edged ./internal/config

# A short run of every fuzz target (go test allows one target per run).
FUZZTIME ?= 20s
fuzz:
	@for t in $$($(GO) test -list 'Fuzz.*' ./sensors | grep ^Fuzz); do \
		echo "== sensors $$t"; $(GO) test ./sensors -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done
	@for t in $$($(GO) test -list 'Fuzz.*' ./internal/sketch | grep ^Fuzz); do \
		echo "== sketch $$t"; $(GO) test ./internal/sketch -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done
	$(GO) test ./record -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	@for t in $$($(GO) test -list 'Fuzz.*' ./internal/mqttconn | grep ^Fuzz); do \
		echo "== mqttconn $$t"; $(GO) test ./internal/mqttconn -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done
	@for t in $$($(GO) test -list 'Fuzz.*' ./cep | grep ^Fuzz); do \
		echo "== cep $$t"; $(GO) test ./cep -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done

clean:
	rm -rf $(DIST)

# Debian packages for the gateways, with dpkg-deb alone (packaging/):
# dist/edged_<version>_{arm64,armhf,amd64}.deb. arm64 for 64-bit Raspberry
# Pi OS; armhf for 32-bit Raspberry Pi OS, built for ARMv6 so that one
# package runs on every Pi, Zero and 1 included; amd64 for PCs and tests.
# The binaries are those of make cross (same names, same flags).
# DEB_ARCHES picks some of them; DEB_MAINTAINER sets the Maintainer field;
# DEB_XZ_LEVEL the xz level (dpkg's default 6; the tests use 0, faster).
# make deb TAGS=kafka builds dist/edged-kafka_<version>_<arch>.deb: the
# package edged-kafka, with the Kafka output, which replaces edged.
.PHONY: deb
DEB_ARCHES ?= arm64 armhf amd64
DEB_MAINTAINER ?= edged maintainers <edged@localhost>
DEB_XZ_LEVEL ?= 6
deb:
	@mkdir -p $(DIST)
	@debs=; for a in $(DEB_ARCHES); do \
		case $$a in \
		arm64) goenv="GOARCH=arm64"; bin=edged$(VARIANT)-linux-arm64;; \
		armhf) goenv="GOARCH=arm GOARM=6"; bin=edged$(VARIANT)-linux-armv6;; \
		amd64) goenv="GOARCH=amd64"; bin=edged$(VARIANT)-linux-amd64;; \
		*) echo "deb: unknown architecture $$a (arm64, armhf or amd64)" >&2; exit 2;; \
		esac; \
		echo "CGO_ENABLED=0 GOOS=linux $$goenv $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(DIST)/$$bin ./cmd/edged"; \
		env CGO_ENABLED=0 GOOS=linux $$goenv $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(DIST)/$$bin ./cmd/edged || exit 1; \
		deb=$$(GO='$(GO)' DEB_PACKAGE='edged$(VARIANT)' DEB_MAINTAINER='$(DEB_MAINTAINER)' DEB_XZ_LEVEL='$(DEB_XZ_LEVEL)' \
			packaging/build-deb.sh $$a $(DIST)/$$bin '$(VERSION)' $(DIST)) || exit 1; \
		debs="$$debs $$deb"; \
	done; \
	ls -l $$debs | awk '{printf "%-48s %6.2f MiB\n", $$9, $$5/1048576}'

# The firmware tests (firmware-tests/README.md): the unit tests under qemu
# (test-arm; test-armv6), then firmware-e2e: the binaries of make cross, end
# to end under qemu user emulation (arm64; armv7; armv6 as the Pi Zero/1's
# ARM1176) against a real mosquitto and a socat pseudo-terminal: the demo
# config boots; serial and MQTT readings go through a window to an upstream
# broker across a SIGKILL and a restart, nothing lost, nothing twice by id;
# SIGTERM exits 0 after a final checkpoint. make test runs the same.
# FIRMWARE_TARGETS: NAME=BINARY [EMULATOR [ARGS...]] entries separated by ";".
# On 2 cores: firmware-e2e about 20 s with a warm build cache, 4.5 minutes
# from a cold one (make cross is most of it); test-armv6 20 s, 1 minute cold.
.PHONY: firmware-test firmware-e2e test-armv6
FIRMWARE_TARGETS ?= arm64=$(CURDIR)/$(DIST)/edged-linux-arm64 $(QEMU_ARM64);armv7=$(CURDIR)/$(DIST)/edged-linux-armv7 $(QEMU_ARM);armv6=$(CURDIR)/$(DIST)/edged-linux-armv6 $(QEMU_ARM) -cpu arm1176
firmware-test: test-arm test-armv6 firmware-e2e

firmware-e2e: cross-default
	@command -v $(QEMU_ARM) >/dev/null && command -v $(QEMU_ARM64) >/dev/null || \
		{ echo "firmware-e2e: $(QEMU_ARM) or $(QEMU_ARM64) not found: apt-get install qemu-user-static" >&2; exit 1; }
	@command -v socat >/dev/null && test -x /usr/sbin/mosquitto || \
		{ echo "firmware-e2e: needs socat and /usr/sbin/mosquitto: apt-get install socat mosquitto" >&2; exit 1; }
	EDGED_FIRMWARE_TARGETS='$(FIRMWARE_TARGETS)' $(GO) test -tags firmware -count=1 -parallel 6 -timeout 15m -v ./firmware-tests/...

# The store and pipeline tests built for ARMv6 and run as on a Pi Zero/1.
ARMV6_PKGS := ./store/... ./pipeline/...
test-armv6:
	@command -v $(QEMU_ARM) >/dev/null || \
		{ echo "test-armv6: $(QEMU_ARM) not found: apt-get install qemu-user-static" >&2; exit 1; }
	GOARCH=arm GOARM=6 $(GO) test -count=1 -exec '$(QEMU_ARM) -cpu arm1176' $(ARMV6_PKGS)
