package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// probeEnv makes this test binary a probe instead of running tests: it asks testenv for the
// service named (mysql, redis or rocketmq) as a test would, prints what the test would have
// seen (OK, SKIP or FAIL with the message) and exits 1 on FAIL.
const probeEnv = "TXCONSUME_TESTENV_PROBE"

func TestMain(m *testing.M) {
	if service := os.Getenv(probeEnv); service != "" {
		os.Exit(probe(service))
	}
	os.Exit(M(m).Run())
}

// recorder is the testing.TB of a probe: Fatalf and Skipf record and stop the probe.
type recorder struct {
	testing.TB
	outcome string
}

func (r *recorder) Helper()      {}
func (r *recorder) Name() string { return "probe" }
func (r *recorder) Fatalf(format string, args ...any) {
	r.outcome = "FAIL: " + fmt.Sprintf(format, args...)
	panic(r)
}

func (r *recorder) Skipf(format string, args ...any) {
	r.outcome = "SKIP: " + fmt.Sprintf(format, args...)
	panic(r)
}

func probe(service string) (code int) {
	r := &recorder{}
	defer func() {
		if p := recover(); p != nil && p != r {
			panic(p)
		}
		fmt.Println(r.outcome)
		if strings.HasPrefix(r.outcome, "FAIL") {
			code = 1
		}
		if err := TerminateContainers(); err != nil {
			fmt.Println("FAIL: terminate:", err)
			code = 1
		}
	}()
	switch service {
	case "mysql":
		MySQLBaseDSN(r)
	case "redis":
		RedisAddr(r)
	case "rocketmq":
		RocketMQServer(r)
	default:
		r.outcome = "FAIL: unknown service " + service
		return 1
	}
	r.outcome = "OK"
	return 0
}

// TestContainersThatCannotStart runs probes that ask for containers which cannot start: an image
// that exists nowhere, or no Docker engine at all where none runs. Under CI=true every service is
// then a failure that names the cause, elsewhere a skip: the testcontainers leg of CI cannot pass
// by skipping.
func TestContainersThatCannotStart(t *testing.T) {
	const missing = "txconsume-test.invalid/missing:0"
	run := func(t *testing.T, service string, env ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), probeEnv+"="+service, EnvTestcontainers+"=1",
			EnvMySQLImage+"="+missing, EnvRedisImage+"="+missing, EnvRocketMQImage+"="+missing)
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	cause := func(t *testing.T, out string) {
		t.Helper()
		if !strings.Contains(out, "no Docker engine") {
			require.Contains(t, out, "start ")
			require.Contains(t, out, missing)
		}
	}
	for _, service := range []string{"mysql", "redis", "rocketmq"} {
		t.Run(service+" fails under CI=true", func(t *testing.T) {
			out, err := run(t, service, "CI=true")
			require.Error(t, err, out)
			require.Contains(t, out, "FAIL: testenv: ")
			require.Contains(t, out, "is required under CI=true but unavailable")
			cause(t, out)
		})
		t.Run(service+" skips elsewhere", func(t *testing.T) {
			out, err := run(t, service, "CI=")
			require.NoError(t, err, out)
			require.Contains(t, out, "SKIP: testenv: ")
			cause(t, out)
		})
	}
	t.Run("TXCONSUME_TESTCONTAINERS=0 says containers are off", func(t *testing.T) {
		out, err := run(t, "redis", "CI=true", EnvTestcontainers+"=0", EnvRedisAddr+"=")
		require.Error(t, err, out)
		require.Contains(t, out, "turned off by "+EnvTestcontainers+"=0")
	})
}
