# kharness: the two entry points are `make run` and `make test`. Both first
# install the Debian packages the pipeline needs (through kharness doctor).
GO      ?= go
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# e2e tests boot real kernels: give them room on a 2-core machine.
E2E_TIMEOUT ?= 80m

ACTIONLINT ?= github.com/rhysd/actionlint/cmd/actionlint@v1.7.12

.PHONY: run test unit e2e deps vet lint bin bench soak nightly mutant-table

bin:
	$(GO) build -o bin/kharness ./cmd/kharness

deps: bin
	@./bin/kharness doctor >/dev/null || $(SUDO) ./bin/kharness doctor --install

run: deps
	./bin/kharness run

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	GOARCH=386 $(GO) vet ./suites/... ./initramfs/...
	$(GO) vet -tags e2e ./cmd/kharness/
	$(GO) vet -tags 'e2e soak' ./cmd/kharness/
	$(GO) vet -tags 'e2e mutanttable' ./cmd/kharness/
	$(GO) run $(ACTIONLINT) .github/workflows/ci.yml .github/workflows/nightly.yml

unit: vet
	$(GO) test ./...

e2e: deps
	$(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -v ./cmd/kharness/ -run E2E

# deps first: the unit tests load the report in Chromium, which doctor installs.
test: deps unit e2e

# Soak: the default matrix SOAK_RUNS times on real kernels, every failed
# test tallied (not in CI: ~10 min per round under TCG here).
SOAK_RUNS ?= 10
soak: deps
	KHARNESS_SOAK_RUNS=$(SOAK_RUNS) $(GO) test -tags 'e2e soak' -count=1 -timeout 0 -v ./cmd/kharness/ -run '^TestSoak$$'

# Which mutants the kernel's own mm selftests catch: every mutant cell of
# nightly.yaml booted with kselftest-mm (not CI: about two hours here).
mutant-table: deps
	$(GO) test -tags 'e2e mutanttable' -count=1 -timeout 0 -v ./cmd/kharness/ -run '^TestMutantTable$$'

# The floors: kharness's cold and incremental kernel builds vs plain make
# on the same tree and .config (a fresh cache of its own, ~20 min), and
# its boot to the first result vs a bare kernel + trivial init.
bench: deps
	$(GO) test -tags e2e -run '^$$' -bench '^BenchmarkBuild$$' -benchtime 1x -timeout 90m ./cmd/kharness/
	$(GO) test -tags e2e -run '^$$' -bench '^BenchmarkBoot$$' -benchtime 3x -timeout 60m ./cmd/kharness/

# The nightly matrix on this machine, as .github/workflows/nightly.yml runs
# it sharded: suspects retried once, the run imported into history, the
# report written (results/report/index.html), the gate's exit code last.
nightly: deps
	./bin/kharness run -c nightly.yaml --retry || true
	./bin/kharness history import results/
	./bin/kharness report -o results/report
	./bin/kharness history gate --fail-on regression
