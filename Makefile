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
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: demo
demo: ## Run the order-service demo: duplicates, SIGKILLs, exactly-once through the outbox checked in MySQL (MariaDB by default)
	$(FIRST_SERVER) $(SERVICES) up
	$(FIRST_SERVER) && $(WITH_SERVICES) go run ./examples/order-service/cmd/demo

.PHONY: test
test: ## Start the services, run every test with -race on MariaDB and Oracle MySQL, then the Docker leg
	scripts/test.sh -race -count=1 -timeout 40m

.PHONY: test-docker
test-docker: ## Only the Docker leg: core, idem and integration tests through testcontainers, then docker-compose.yml + the demo
	bash scripts/docker/test-docker.sh

.PHONY: docker-images
docker-images: ## Build the local MySQL, Redis and RocketMQ images (for machines where Docker Hub does not answer)
	bash scripts/docker/build-images.sh

.PHONY: test-short
test-short: ## Run only the tests that need no services
	go test -short -count=1 ./...

.PHONY: bench
bench: ## Benchmarks against the real services (MariaDB by default), each beside its baseline: ratios, latencies
	$(FIRST_SERVER) $(SERVICES) up
	$(FIRST_SERVER) && $(WITH_SERVICES) go test -run '^$$' -bench . -benchtime 2s -count 3 ./txconsume/ ./txconsume/idem/ ./txconsume/outbox/ | tee .services/bench.txt
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
services-up: ## Start (or reuse) MariaDB, Oracle MySQL, Redis and RocketMQ on loopback
	$(SERVICES) up

.PHONY: services-down
services-down: ## Stop the services that services-up started
	$(SERVICES) down

.PHONY: services-env
services-env: ## Print the TXCONSUME_* variables that point at the services
	@$(SERVICES) env
