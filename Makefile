# hangwatch: `make demo` to watch it work, `make test` to check it.

GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHSTAT   ?= golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.version=$(VERSION)

# Every fuzz target, as package:name. make test runs each for a few seconds.
FUZZ_TARGETS := ./wire:FuzzDecode ./wire:FuzzAppendOutput ./clock:FuzzWheel ./engine:FuzzEngine
FUZZTIME     ?= 10m

.PHONY: build demo test fuzz soak bench bench-quick benchstat lint

## build: the hangwatch binary, in bin/
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/hangwatch ./cmd/hangwatch

## demo: an embedded NATS server, the engine and a simulated pipeline for 30 s
demo:
	$(GO) run -ldflags '$(LDFLAGS)' ./cmd/hangwatch demo

## test: vet, every test under the race detector, then each fuzz target for 5 s
test:
	$(GO) vet ./...
	$(GO) test -race ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=5s

## fuzz: run each fuzz target for FUZZTIME (default 10m); a failing input lands in testdata/fuzz
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; echo "fuzz $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10s $$pkg || exit 1; \
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

## benchstat: compare bench/out/old.txt with bench/out/bench.txt
benchstat:
	$(GO) run $(BENCHSTAT) bench/out/old.txt bench/out/bench.txt

## lint: gofmt, vet and staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
