# txconsume: run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

SERVICES := scripts/services.sh
# Every target that talks to services runs with their addresses exported.
WITH_SERVICES := eval "$$($(SERVICES) env)" &&
GOLANGCI_LINT := go run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0

.PHONY: help
help: ## List the targets with what they do
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: demo
demo: services-up ## Run the order-service demo: duplicates, a SIGKILL, exactly-once checked in MySQL
	$(WITH_SERVICES) go run ./examples/order-service/cmd/demo

.PHONY: test
test: services-up ## Start MySQL, RocketMQ and Redis, then run every test (unit and integration) with -race
	$(WITH_SERVICES) go test -race -count=1 -timeout 40m ./...

.PHONY: test-short
test-short: ## Run only the tests that need no services
	go test -short -count=1 ./...

.PHONY: bench
bench: services-up ## Benchmarks against the real services, each beside its baseline: throughput ratios, latencies
	$(WITH_SERVICES) go test -run '^$$' -bench . -benchtime 2s -count 3 ./txconsume/ ./txconsume/idem/ ./txconsume/outbox/ | tee .services/bench.txt
	@printf '\n%-70s %9s %9s %7s\n' 'candidate vs baseline' 'msgs/s' 'baseline' 'ratio'
	@awk -f scripts/bench-ratios.awk .services/bench.txt | sort
	@printf '\n%-70s %9s %9s\n' 'latency (mean p50, worst p99 of the runs)' 'p50 ms' 'p99 ms'
	@awk -f scripts/bench-latency.awk .services/bench.txt | sort

.PHONY: lint
lint: ## gofmt, go vet and golangci-lint
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	go vet ./...
	$(GOLANGCI_LINT) run ./...

.PHONY: services-up
services-up: ## Start (or reuse) MySQL/MariaDB, Redis and RocketMQ on loopback
	$(SERVICES) up

.PHONY: services-down
services-down: ## Stop the services that services-up started
	$(SERVICES) down

.PHONY: services-env
services-env: ## Print the TXCONSUME_* variables that point at the services
	@$(SERVICES) env
