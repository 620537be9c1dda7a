# txconsume: run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

SERVICES := scripts/services.sh
# Every target that talks to services runs with their addresses exported.
WITH_SERVICES := eval "$$($(SERVICES) env)" &&
# The database servers of the test matrix (TXCONSUME_SERVERS: mariadb, mysql or both). make test
# runs a leg on each; make demo and make bench use the first (TXCONSUME_SERVERS=mysql make demo).
TXCONSUME_SERVERS ?= mariadb mysql
export TXCONSUME_SERVERS
FIRST_SERVER := TXCONSUME_SERVERS=$(firstword $(TXCONSUME_SERVERS))
GOLANGCI_LINT := go run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0

.PHONY: help
help: ## List the targets with what they do
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: demo
demo: ## Run the order-service demo: duplicates, SIGKILLs, exactly-once through the outbox checked in MySQL (MariaDB by default)
	$(FIRST_SERVER) $(SERVICES) up
	$(FIRST_SERVER) && $(WITH_SERVICES) go run ./examples/order-service/cmd/demo

.PHONY: test
test: ## Start the services, run every test with -race on MariaDB and Oracle MySQL, then the Docker leg
	$(MAKE) --no-print-directory test-bench-tool
	scripts/test.sh -race -count=1 -timeout 40m

# The bench tool is a module of its own (bench/), outside ./... of the library: its unit tests
# (parsers, ratios, tables, the plot) need no services and run in make test; the benchmarks
# themselves run only in make bench.
.PHONY: test-bench-tool
test-bench-tool: ## Run the unit tests of the bench tool (no services; make bench runs the benchmarks)
	cd bench && go test -race -count=1 ./...

.PHONY: chaos
chaos: services-up ## Long fault-injection runs on each database server (replay: TXCONSUME_CHAOS_SEED=<seed>), with a summary table
	$(WITH_SERVICES) scripts/chaos.sh

.PHONY: test-docker
test-docker: ## Only the Docker leg: core, idem and integration tests through testcontainers, then docker-compose.yml + the demo
	bash scripts/docker/test-docker.sh

.PHONY: docker-images
docker-images: ## Build the local MySQL, Redis and RocketMQ images (for machines where Docker Hub does not answer)
	bash scripts/docker/build-images.sh

.PHONY: test-short
test-short: ## Run only the tests that need no services
	go test -short -count=1 ./...
	cd bench && go test -short -count=1 ./...

# make bench: the Go benchmarks of BENCH_PKGS (in the database, each beside its bare baseline), then
# the suites of the bench tool (bench/, a module of its own: its plotting library stays out of the
# library's go.mod). All of it lands in one table, docs/bench-results.md and docs/bench.png.
# Add packages to BENCH_PKGS and suites to BENCH_SUITES; BENCH_NOTE says what else loaded the machine.
BENCH_PKGS ?= ./txconsume/ ./txconsume/idem/ ./txconsume/outbox/
BENCH_SUITES ?= broker,dedup
BENCH_NOTE ?=
BENCH_OUT := .services/bench
TXBENCH = cd bench && go run ./cmd/txbench -suites '$(BENCH_SUITES)' -note '$(BENCH_NOTE)' -gobench ../$(BENCH_OUT)/gobench.txt

.PHONY: bench
bench: ## Every benchmark beside its baseline (broker, database, dedup table at 0/1M/10M rows): table, docs/bench.png, docs/bench-results.md
	$(FIRST_SERVER) $(SERVICES) up
	mkdir -p $(BENCH_OUT)
	@# Three rounds of -count 1 rather than -count 3, which would repeat each sub-benchmark in a row:
	@# candidates and baselines then alternate, and machine noise hits both alike.
	@# pipefail and exit: a failed round stops make bench instead of leaving its rows out.
	set -o pipefail && $(FIRST_SERVER) && $(WITH_SERVICES) for round in 1 2 3; do go test -run '^$$' -bench . -benchtime 2s -count 1 -timeout 60m $(BENCH_PKGS) || exit 1; done | tee $(BENCH_OUT)/gobench.txt
	$(FIRST_SERVER) && $(WITH_SERVICES) $(TXBENCH) -out ../docs

.PHONY: bench-quick
bench-quick: ## A short make bench for a quick look (one repetition, tables up to 1M rows), written under .services/bench
	$(FIRST_SERVER) $(SERVICES) up
	mkdir -p $(BENCH_OUT)
	set -o pipefail && $(FIRST_SERVER) && $(WITH_SERVICES) go test -run '^$$' -bench . -benchtime 1s -count 1 -timeout 60m $(BENCH_PKGS) | tee $(BENCH_OUT)/gobench.txt
	$(FIRST_SERVER) && $(WITH_SERVICES) $(TXBENCH) -quick -out ../$(BENCH_OUT)

.PHONY: bench-clean
bench-clean: ## Drop the filled dedup tables that make bench keeps between runs
	$(FIRST_SERVER) && $(WITH_SERVICES) cd bench && go run ./cmd/txbench -clean

.PHONY: lint
lint: ## gofmt, go vet and golangci-lint, on the library and on the bench tool
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	go vet ./...
	$(GOLANGCI_LINT) run ./...
	cd bench && go vet ./... && $(GOLANGCI_LINT) run ./...

.PHONY: services-up
services-up: ## Start (or reuse) MariaDB, Oracle MySQL, Redis and RocketMQ on loopback
	$(SERVICES) up

.PHONY: services-down
services-down: ## Stop the services that services-up started
	$(SERVICES) down

.PHONY: services-env
services-env: ## Print the TXCONSUME_* variables that point at the services
	@$(SERVICES) env
