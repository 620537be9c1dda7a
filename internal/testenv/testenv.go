// Package testenv gives integration tests real services, isolated per test:
// a fresh MySQL database, a unique RocketMQ topic and consumer group, and a Redis key prefix.
//
// Each service is found in this order:
//
//  1. its environment variable (TXCONSUME_MYSQL_DSN, TXCONSUME_ROCKETMQ_NAMESRV, TXCONSUME_REDIS_ADDR),
//     which `make test` sets from scripts/services.sh;
//  2. a container started with testcontainers-go, when a Docker engine answers (or for every
//     service when TXCONSUME_TESTCONTAINERS=1; never when it is 0). TXCONSUME_MYSQL_IMAGE,
//     TXCONSUME_REDIS_IMAGE and TXCONSUME_ROCKETMQ_IMAGE choose the images (the official ones by
//     default); a package's TestMain runs its tests through [M], which terminates the containers;
//  3. otherwise the test is skipped with a message naming the command that starts services,
//     except under CI=true, where a missing service fails the test: CI never passes by skipping.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Environment variables that point tests at running services.
const (
	EnvMySQLDSN        = "TXCONSUME_MYSQL_DSN"
	EnvRocketMQNamesrv = "TXCONSUME_ROCKETMQ_NAMESRV"
	EnvRocketMQBroker  = "TXCONSUME_ROCKETMQ_BROKER" // optional: broker address for topic creation
	EnvRedisAddr       = "TXCONSUME_REDIS_ADDR"
	// EnvExpectServer, when set to "mariadb" or "mysql", makes every database test fail unless
	// TXCONSUME_MYSQL_DSN leads to that kind of server: each leg of the server matrix
	// (scripts/test-matrix.sh) sets it, so that a leg cannot pass on the wrong server.
	EnvExpectServer = "TXCONSUME_EXPECT_SERVER"
)

const startHint = "start services with `make services-up` and `eval \"$(scripts/services.sh env)\"`, " +
	"or run `make test`"

// unavailable stops the test because a service is missing: a skip on a developer's machine,
// a failure under CI.
func unavailable(t testing.TB, service string, reason error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("testenv: %s is required under CI=true but unavailable: %v", service, reason)
	}
	t.Skipf("testenv: %s unavailable (%v); %s (under CI=true this fails instead)", service, reason, startHint)
}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

// UniqueName returns a name made of prefix, a readable part of the test's name and random hex,
// short enough for MySQL identifiers (64), RocketMQ topics and groups (127).
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	readable := strings.Trim(nonWord.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if len(readable) > 32 {
		readable = readable[len(readable)-32:]
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testenv: random name: %v", err)
	}
	return prefix + "_" + readable + "_" + hex.EncodeToString(b)
}
