// Package integration holds end-to-end tests that run txconsume against real MySQL/MariaDB,
// RocketMQ and Redis. Services come from the TXCONSUME_* environment variables (set by
// `make test`), from testcontainers when a Docker engine answers, or the tests skip locally
// (never under CI=true). See internal/testenv.
package integration
