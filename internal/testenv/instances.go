package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
)

// Private instances are servers of a test's own, for tests that stop, kill and restart them: the
// shared services (TXCONSUME_MYSQL_DSN, TXCONSUME_REDIS_ADDR, TXCONSUME_ROCKETMQ_NAMESRV) serve
// other tests at the same time and are never touched. scripts/services.sh runs them (its
// "instance" command) from the same binaries as the shared services, on loopback ports below the
// kernel's ephemeral range, with data under .services/instances; each is removed when its test
// ends.

// Kinds of private instance.
const (
	KindMariaDB = "mariadb"
	KindMySQL   = "mysql" // Oracle MySQL
	KindRedis   = "redis"
	KindNamesrv = "namesrv"
	KindBroker  = "broker"
)

// Instance is a private server. Its methods fail the test when the server does not do as told.
type Instance struct {
	Kind string
	Name string // unique to the test; also the broker name of a broker
	Port int
	args []string // the kind-specific arguments of `instance start` after the port
}

// Addr returns the instance's host:port.
func (i *Instance) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(i.Port)) }

func (i *Instance) String() string { return i.Kind + " " + i.Name + " on " + i.Addr() }

// Start starts the instance again with the data it had, and returns once it answers (a database:
// SELECT 1 as txconsume; a broker: registered with its name server). Starting a running instance
// does nothing.
func (i *Instance) Start(t testing.TB) {
	t.Helper()
	args := append([]string{"start", i.Name, i.Kind, strconv.Itoa(i.Port)}, i.args...)
	if _, err := instanceCommand(args...); err != nil {
		t.Fatalf("testenv: start %s: %v", i, err)
	}
}

// Stop stops the instance as an operator would (SIGTERM) and waits until the process has exited.
func (i *Instance) Stop(t testing.TB) {
	t.Helper()
	if _, err := instanceCommand("stop", i.Name); err != nil {
		t.Fatalf("testenv: stop %s: %v", i, err)
	}
}

// Kill kills the instance (SIGKILL), as a crash or the OOM killer would, and waits until the
// process has gone.
func (i *Instance) Kill(t testing.TB) {
	t.Helper()
	if _, err := instanceCommand("kill", i.Name); err != nil {
		t.Fatalf("testenv: kill %s: %v", i, err)
	}
}

// Running reports whether the instance's process runs.
func (i *Instance) Running() bool {
	out, err := instanceCommand("pid", i.Name)
	return err == nil && strings.TrimSpace(out) != ""
}

// Restart stops the instance (Kill when kill is true, else Stop) and starts it again.
func (i *Instance) Restart(t testing.TB, kill bool) {
	t.Helper()
	if kill {
		i.Kill(t)
	} else {
		i.Stop(t)
	}
	i.Start(t)
}

// PrivateDatabase starts a database server of the same kind as the one the tests use (MariaDB
// or Oracle MySQL, see MySQLServer), so that each leg of the server matrix tests its own kind.
func PrivateDatabase(t testing.TB) *Instance {
	t.Helper()
	kind := KindMySQL
	if MySQLServer(t).IsMariaDB() {
		kind = KindMariaDB
	}
	return startInstance(t, kind, 1)
}

// PrivateDatabaseDSN creates a fresh database on a private database server and returns its DSN,
// with the parameters of the DSN the tests use (TXCONSUME_MYSQL_DSN).
func PrivateDatabaseDSN(t testing.TB, db *Instance) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(MySQLBaseDSN(t))
	if err != nil {
		t.Fatalf("testenv: parse %s: %v", EnvMySQLDSN, err)
	}
	cfg.Addr, cfg.DBName = db.Addr(), ""
	// Not dropped at the end: the server goes with its data, and may be down by then.
	return createDatabase(t, cfg, false)
}

// PrivateRedis starts a Redis server with an append-only file, so that a restart keeps what it
// acknowledged.
func PrivateRedis(t testing.TB) *Instance {
	t.Helper()
	return startInstance(t, KindRedis, 1)
}

// Cluster is a private RocketMQ cluster: a name server and its brokers (DefaultCluster).
type Cluster struct {
	Namesrv *Instance
	Brokers []*Instance
}

// PrivateRocketMQ starts a name server and one broker registered with it.
func PrivateRocketMQ(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{Namesrv: startInstance(t, KindNamesrv, 1)}
	c.AddBroker(t)
	return c
}

// NameServer returns the cluster's name server address.
func (c *Cluster) NameServer() string { return c.Namesrv.Addr() }

// AddBroker starts another broker registered with the cluster's name server.
func (c *Cluster) AddBroker(t testing.TB) *Instance {
	t.Helper()
	// A broker listens on its port, on port-2 (its "fast" port) and on port+1 (HA).
	b := startInstance(t, KindBroker, 4, c.NameServer())
	c.Brokers = append(c.Brokers, b)
	return b
}

// instanceSeq makes instance names unique within the process; the test name and a random part make
// them unique across the processes that run tests at the same time.
var instanceSeq struct {
	mu sync.Mutex
	n  int
}

// startInstance picks free ports for a new instance (span consecutive ports, the instance's port
// being the third when span is 4) and starts it, trying other ports when another process takes
// them first. The instance is removed, data included, when the test ends.
func startInstance(t testing.TB, kind string, span int, extra ...string) *Instance {
	t.Helper()
	instanceSeq.mu.Lock()
	instanceSeq.n++
	seq := instanceSeq.n
	instanceSeq.mu.Unlock()
	i := &Instance{Kind: kind, Name: fmt.Sprintf("%s-%d", UniqueName(t, kind), seq), args: extra}
	t.Cleanup(func() {
		if _, err := instanceCommand("rm", i.Name); err != nil {
			t.Errorf("testenv: remove %s: %v", i, err)
		}
	})
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		base, err := freePorts(span)
		if err != nil {
			unavailable(t, "a free loopback port", err)
		}
		i.Port = base
		if span == 4 {
			i.Port = base + 2
		}
		args := append([]string{"start", i.Name, kind, strconv.Itoa(i.Port)}, extra...)
		out, err := instanceCommand(args...)
		if err == nil {
			t.Logf("testenv: private %s", i)
			return i
		}
		lastErr = err
		if !strings.Contains(out, "Address already in use") && !strings.Contains(out, "is taken") {
			break
		}
		_, _ = instanceCommand("rm", i.Name)
	}
	if errors.Is(lastErr, errNoServicesScript) {
		unavailable(t, "private "+kind, lastErr)
	}
	t.Fatalf("testenv: start private %s: %v", kind, lastErr)
	return nil
}

// Ports of private instances come from below the kernel's ephemeral range (32768 and up on
// Linux), so that an outgoing connection cannot take one between a stop and a restart.
const (
	privatePortMin = 20000
	privatePortMax = 32000
)

var usedPorts struct {
	mu    sync.Mutex
	ports map[int]bool
}

// freePorts returns the first of span consecutive ports that nothing listens on, on loopback or on
// every interface, and that this process has not handed out before.
func freePorts(span int) (int, error) {
	usedPorts.mu.Lock()
	defer usedPorts.mu.Unlock()
	if usedPorts.ports == nil {
		usedPorts.ports = map[int]bool{}
	}
	for try := 0; try < 200; try++ {
		base := privatePortMin + rand.IntN(privatePortMax-privatePortMin-span)
		ok := true
		for p := base; p < base+span && ok; p++ {
			ok = !usedPorts.ports[p] && canListen("127.0.0.1", p) && canListen("0.0.0.0", p)
		}
		if ok {
			for p := base; p < base+span; p++ {
				usedPorts.ports[p] = true
			}
			return base, nil
		}
	}
	return 0, fmt.Errorf("no %d free consecutive ports in [%d, %d)", span, privatePortMin, privatePortMax)
}

func canListen(host string, port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

var errNoServicesScript = errors.New("scripts/services.sh not found")

// servicesScript returns the path of scripts/services.sh in this module.
func servicesScript() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errNoServicesScript
	}
	path := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "services.sh")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%w: %w", errNoServicesScript, err)
	}
	return path, nil
}

// instanceCommand runs `scripts/services.sh instance args...` and returns its output; the error
// carries the output's end, where the script says what failed.
func instanceCommand(args ...string) (string, error) {
	script, err := servicesScript()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{script, "instance"}, args...)...)
	// Docker detection is for the shared services; private instances always run on this machine.
	cmd.Env = append(os.Environ(), "TXCONSUME_NO_DOCKER=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		text := out.String()
		if len(text) > 3000 {
			text = "..." + text[len(text)-3000:]
		}
		return out.String(), fmt.Errorf("services.sh instance %s: %w\n%s", strings.Join(args, " "), err, text)
	}
	return out.String(), nil
}

// createDatabase creates a fresh database on the server of cfg, dropped when the test ends if drop
// is true, and returns a DSN that selects it.
func createDatabase(t testing.TB, cfg *mysql.Config, drop bool) string {
	t.Helper()
	admin, err := sqlx.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("testenv: open mysql: %v", err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		unavailable(t, "MySQL", err)
	}
	name := UniqueName(t, "txc")
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4"); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Logf("testenv: database %s on %s", name, cfg.Addr)
	t.Cleanup(func() {
		if !drop {
			return
		}
		admin, err := sqlx.Open("mysql", cfg.FormatDSN())
		if err != nil {
			t.Errorf("testenv: reopen mysql to drop %s: %v", name, err)
			return
		}
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	db := *cfg
	db.DBName = name
	return db.FormatDSN()
}
