# hangwatch: `make demo` to watch it work, `make test` to check it.

GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHSTAT   ?= golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The commit and whether the tree had changes, for builds that Go cannot stamp itself
# (GOFLAGS=-buildvcs=false, a worktree): hangwatch version prints them.
REVISION    ?= $(shell git rev-parse HEAD 2>/dev/null)
DIRTY       ?= $(shell git status --porcelain 2>/dev/null | grep -q . && echo true || echo false)
LDFLAGS     := -X main.version=$(VERSION) -X main.revision=$(REVISION) -X main.dirty=$(DIRTY)

# Tools that make test runs and that take long to build are built once, into a cache
# folder kept across clones, one folder per version (.ci/run installs them when missing).
TOOLS_DIR        ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hangwatch/tools
PROMTOOL_VERSION := v0.316.0
PROMTOOL         ?= $(TOOLS_DIR)/promtool-$(PROMTOOL_VERSION)/promtool

# Every fuzz target, as package:name. make test runs each for a few seconds.
FUZZ_TARGETS := ./wire:FuzzDecode ./wire:FuzzAppendOutput ./wire:FuzzJSONStringLen ./clock:FuzzWheel ./engine:FuzzEngine \
                ./transport/ingest:FuzzHandler ./hangevent:FuzzParse ./internal/subject:FuzzToken \
                ./transport:FuzzHeartbeat ./transport:FuzzParseOverride
FUZZTIME     ?= 10m
# An input found is minimized for at most this many runs: a time could outlast a short
# -fuzztime (make test's 5 s) and end the run with an error.
FUZZMINIMIZE ?= 100x

.PHONY: build install help demo test check-deploy tools docs fuzz soak bench bench-quick bench-stress bench-memory benchstat lint

## build: the hangwatch binary, in bin/
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/hangwatch ./cmd/hangwatch

## install: go install hangwatch, with its version, into $GOBIN (else $GOPATH/bin), and say where
install:
	$(GO) install -ldflags '$(LDFLAGS)' ./cmd/hangwatch
	@dir=$$($(GO) env GOBIN); if [ -z "$$dir" ]; then gopath=$$($(GO) env GOPATH); dir=$${gopath%%:*}/bin; fi; \
	echo "installed $$dir/hangwatch"; \
	case ":$$PATH:" in *":$$dir:"*) ;; *) echo "$$dir is not on your PATH: add it (export PATH=\"$$dir:\$$PATH\"), or run $$dir/hangwatch";; esac

## help: this list
help:
	@echo "make targets:"
	@awk '/^## [a-z-]+:/ { line = substr($$0, 4); i = index(line, ":"); \
		printf "  %-13s %s\n", substr(line, 1, i - 1), substr(line, i + 2); next } \
		/^## / { printf "  %-13s %s\n", "", substr($$0, 4) }' $(firstword $(MAKEFILE_LIST))

## demo: an embedded NATS server, the engine and a simulated pipeline for 30 s
demo:
	$(GO) run -ldflags '$(LDFLAGS)' ./cmd/hangwatch demo

## test: vet, every test under the race detector, the deployment files (check-deploy), then
## each fuzz target for 5 s
test: $(PROMTOOL)
	$(GO) vet ./...
	$(GO) test -race ./...
	$(MAKE) --no-print-directory check-deploy
	$(MAKE) --no-print-directory fuzz FUZZTIME=5s

## check-deploy: the alert rules and their tests (promtool), then deploy/validate: the Kubernetes
## manifests, the dashboard's and rules' queries, the systemd unit, the Dockerfile
check-deploy: $(PROMTOOL)
	$(PROMTOOL) check rules deploy/prometheus/alerts.yml
	cd deploy/prometheus && $(PROMTOOL) test rules alerts_test.yml
	cd deploy/validate && $(GO) vet ./... && $(GO) test ./... # no goroutines there: -race would only slow the first build
	deploy/systemd/check.sh

## tools: build the tools make test needs, once, into a cache folder (~/.cache/hangwatch/tools)
tools: $(PROMTOOL)

$(PROMTOOL):
	@echo "building promtool $(PROMTOOL_VERSION) into $(@D), once: this takes several minutes"
	@mkdir -p $(@D)
	tmp=$$(mktemp -d) && GOBIN=$$tmp $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION) && \
		mv $$tmp/promtool $@ && rmdir $$tmp

## docs: regenerate docs/configuration.md from the flag definitions (a test says when it is due)
docs:
	$(GO) generate ./cmd/hangwatch

## fuzz: run each fuzz target for FUZZTIME (default 10m); a failing input lands in testdata/fuzz.
## Go 1.26's fuzzing coordinator can fail a run with its own "context deadline exceeded" as
## -fuzztime ends, having found nothing (golang/go#75804, fixed in Go 1.27): such a run, and
## only such a run (no failing input written), is tried once more.
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		for try in 1 2; do \
			echo "fuzz $$name in $$pkg for $(FUZZTIME)"; \
			out=$$($(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$pkg 2>&1); rc=$$?; \
			echo "$$out"; \
			[ $$rc -eq 0 ] && break; \
			if [ $$try -eq 1 ] && echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
				echo "fuzz $$name: the coordinator's own deadline, no failing input (golang/go#75804): once more"; \
			else \
				exit 1; \
			fi; \
		done; \
	done

## soak: 100,000 calls for 10 minutes under the race detector: flat memory, no missed or false hang
soak:
	$(GO) test -race -tags soak -run '^TestSoak$$' -timeout 30m -v ./cmd/hangwatch

## bench: the testing.B benchmarks, 10 runs each, into bench/out/bench.txt for benchstat; then
## the full load report (100,000 live calls, the binary too; minutes), also in bench/out/report.txt
bench: build
	mkdir -p bench/out
	$(GO) test -run '^$$' -bench . -benchmem -count=10 ./... | tee bench/out/bench.txt
	$(GO) build -o bin/loadgen ./bench/cmd/loadgen
	bin/loadgen --calls 100000 --binary bin/hangwatch

## bench-quick: the same load report at a small scale, in under a minute; its last line is JSON
bench-quick:
	mkdir -p bench/out
	$(GO) build -o bin/loadgen ./bench/cmd/loadgen
	bin/loadgen --quick

## bench-stress: 20,000 calls of 10 turns with 600 B texts (~400k events, ~3 GB), the binary against the
## baseline on one NATS server (~3 min); its last line is JSON
bench-stress: build
	mkdir -p bench/out
	$(GO) build -o bin/loadgen ./bench/cmd/loadgen
	bin/loadgen --stress --binary bin/hangwatch

## bench-memory: the memory scenario of issue 11 against the binary: 16,000 armed calls of 200 KB under
## --max-retained-bytes 256MiB, their end, then 1,000,000 ends of calls never seen (~2 min); last line JSON
bench-memory: build
	mkdir -p bench/out
	$(GO) build -o bin/loadgen ./bench/cmd/loadgen
	bin/loadgen --memory-scenario --binary bin/hangwatch

## benchstat: compare bench/out/old.txt with bench/out/bench.txt
benchstat:
	$(GO) run $(BENCHSTAT) bench/out/old.txt bench/out/bench.txt

## lint: gofmt, vet and staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
