package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	dockernet "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcmysql "github.com/testcontainers/testcontainers-go/modules/mysql"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Environment variables that choose how services come from containers.
const (
	// EnvTestcontainers set to "1" starts every service in a container even where its service
	// variable is set; "0" never starts containers. Unset: containers for the services whose
	// variable is unset, when a Docker engine answers.
	EnvTestcontainers = "TXCONSUME_TESTCONTAINERS"
	// EnvMySQLImage, EnvRedisImage and EnvRocketMQImage name the images to start; they default to
	// the official images. scripts/docker/build-images.sh builds local stand-ins where Docker Hub
	// does not answer (txconsume-local/mysql:9.7, txconsume-local/redis:8,
	// txconsume-local/rocketmq:5.3.3).
	EnvMySQLImage    = "TXCONSUME_MYSQL_IMAGE"
	EnvRedisImage    = "TXCONSUME_REDIS_IMAGE"
	EnvRocketMQImage = "TXCONSUME_ROCKETMQ_IMAGE"
)

// The official images, used when no image variable is set.
const (
	DefaultMySQLImage    = "mysql:8.4"
	DefaultRedisImage    = "redis:7"
	DefaultRocketMQImage = "apache/rocketmq:5.3.1"
)

// Labels on every container and network testenv starts: the sweep finds the leftovers of test
// binaries that died before they could terminate theirs.
const (
	labelOwner = "org.txconsume.testenv.owner" // host name and pid of the test binary
	ryukEnv    = "TESTCONTAINERS_RYUK_DISABLED"
)

func init() {
	// TXCONSUME_TESTCONTAINERS=1 means containers for every service: the service variables (which
	// `make test` exports) are dropped before any test reads them.
	if os.Getenv(EnvTestcontainers) == "1" {
		for _, name := range []string{EnvMySQLDSN, EnvRedisAddr, EnvRocketMQNamesrv, EnvRocketMQBroker} {
			_ = os.Unsetenv(name)
		}
	}
}

// askedFor says why a container is started for the service of this variable.
func askedFor(name string) string {
	if os.Getenv(EnvTestcontainers) == "1" {
		return EnvTestcontainers + "=1"
	}
	return name + " unset"
}

func imageFor(env, official string) string {
	if img := os.Getenv(env); img != "" {
		return img
	}
	return official
}

// startFailed wraps the error of a container that did not start; for an official image it adds
// how to use the local ones, since an unreachable Docker Hub is the common cause.
func startFailed(what, img, env string, err error) error {
	if os.Getenv(env) == "" {
		return fmt.Errorf("start %s (%s; where Docker Hub does not answer, `make docker-images` builds local images: see %s): %w",
			what, img, env, err)
	}
	return fmt.Errorf("start %s (%s): %w", what, img, err)
}

var dockerCheck struct {
	once sync.Once
	err  error
}

// dockerAvailable reports whether a Docker engine answers, asking it once per test binary. It
// also makes the reaper choice (see [M]) and sweeps the leftovers of dead test binaries.
func dockerAvailable() error {
	dockerCheck.once.Do(func() {
		if os.Getenv(EnvTestcontainers) == "0" {
			dockerCheck.err = fmt.Errorf("containers are turned off by %s=0", EnvTestcontainers)
			return
		}
		// testcontainers' reaper (Ryuk) is an image from Docker Hub: where the hub does not answer,
		// every container start would fail on it. testenv terminates its containers itself (M) and
		// sweeps what a killed binary left, so Ryuk is off unless the user turns it on.
		if _, set := os.LookupEnv(ryukEnv); !set {
			_ = os.Setenv(ryukEnv, "true")
		}
		defer func() {
			if r := recover(); r != nil {
				dockerCheck.err = fmt.Errorf("no Docker engine: %v", r)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cli, err := testcontainers.NewDockerClientWithOpts(ctx)
		if err != nil {
			dockerCheck.err = fmt.Errorf("no Docker engine: %w", err)
			return
		}
		defer cli.Close()
		if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
			dockerCheck.err = fmt.Errorf("no Docker engine: %w", err)
			return
		}
		sweepLeftovers(ctx, cli)
	})
	return dockerCheck.err
}

// ownerLabels mark what this test binary starts, so that it can be terminated at the end ([M])
// or, if the binary is killed first, swept by the next one on this host.
func ownerLabels() map[string]string {
	host, _ := os.Hostname()
	return map[string]string{labelOwner: host + "/" + strconv.Itoa(os.Getpid())}
}

// sweepLeftovers removes the containers and networks of test binaries on this host that no longer
// run. A failure to sweep is only reported: it costs resources, not correctness.
func sweepLeftovers(ctx context.Context, cli *testcontainers.DockerClient) {
	host, _ := os.Hostname()
	dead := func(labels map[string]string) bool {
		owner, ok := labels[labelOwner]
		h, pid, found := strings.Cut(owner, "/")
		if !ok || !found || h != host {
			return false
		}
		n, err := strconv.Atoi(pid)
		return err == nil && n != os.Getpid() && !processAlive(n)
	}
	var errs []error
	byLabel := make(client.Filters).Add("label", labelOwner)
	containers, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: byLabel})
	errs = append(errs, err)
	for _, c := range containers.Items {
		if dead(c.Labels) {
			_, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
			errs = append(errs, err)
		}
	}
	networks, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: byLabel})
	errs = append(errs, err)
	for _, n := range networks.Items {
		if dead(n.Labels) {
			_, err := cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: sweeping containers of ended test binaries: %v\n", err)
	}
}

// started holds what this test binary started, for M to terminate.
var started struct {
	sync.Mutex
	containers []testcontainers.Container
	networks   []*testcontainers.DockerNetwork
}

func track(c testcontainers.Container) {
	started.Lock()
	defer started.Unlock()
	started.containers = append(started.containers, c)
}

// TerminateContainers stops and removes every container and network that testenv started in this
// process. M calls it after the tests; it is safe to call more than once.
func TerminateContainers() error {
	started.Lock()
	defer started.Unlock()
	var errs []error
	for _, c := range slices.Backward(started.containers) {
		errs = append(errs, testcontainers.TerminateContainer(c))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, n := range started.networks {
		errs = append(errs, n.Remove(ctx))
	}
	started.containers, started.networks = nil, nil
	return errors.Join(errs...)
}

// TestingM is what a TestMain hands to goleak.VerifyTestMain or runs itself.
type TestingM interface{ Run() int }

type terminatingM struct{ m TestingM }

// M wraps a package's *testing.M so that its Run terminates the containers testenv started for
// the package's tests once they are done. Every TestMain of a package that uses testenv runs its
// tests through it:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(testenv.M(m)) }
//	func TestMain(m *testing.M) { os.Exit(testenv.M(m).Run()) }
//
// Terminating here, rather than through testcontainers' reaper, works where the reaper's image
// cannot be pulled; a binary killed before its end leaves containers that the next test binary on
// the host sweeps (by label, once their owner process is gone).
func M(m TestingM) TestingM { return terminatingM{m} }

func (t terminatingM) Run() int {
	code := t.m.Run()
	if err := TerminateContainers(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: terminating containers: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// containerStartTimeout bounds how long a container may take to print its ready line. MySQL
// initialises its data folder and the JVMs of namesrv and broker start slowly on a loaded
// two-core machine: over a minute has been seen.
const containerStartTimeout = 3 * time.Minute

// readyLog waits up to containerStartTimeout for line in the container's log. It replaces
// testcontainers.WithWaitStrategy (which the MySQL module uses too): that caps every wait at 60
// seconds whatever the strategy's own timeout, and a namesrv that took longer under load failed
// every RocketMQ test of its package.
func readyLog(line string) testcontainers.CustomizeRequestOption {
	return testcontainers.WithWaitStrategyAndDeadline(containerStartTimeout,
		wait.ForLog(line).WithStartupTimeout(containerStartTimeout))
}

// loopbackPorts publishes the exposed ports on 127.0.0.1 only, on ports the engine picks.
func loopbackPorts(ports ...string) testcontainers.CustomizeRequestOption {
	return testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
		if hc.PortBindings == nil {
			hc.PortBindings = dockernet.PortMap{}
		}
		for _, p := range ports {
			port := dockernet.MustParsePort(p)
			if _, set := hc.PortBindings[port]; !set {
				hc.PortBindings[port] = []dockernet.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1")}}
			}
		}
	})
}

// endpoint returns 127.0.0.1:PORT for the host port that publishes the container's port.
func endpoint(ctx context.Context, c testcontainers.Container, port string) (string, error) {
	mapped, err := c.MappedPort(ctx, port)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", mapped.Port()), nil
}

func startMySQLContainer() (string, error) {
	if err := dockerAvailable(); err != nil {
		return "", fmt.Errorf("%s and %w", askedFor(EnvMySQLDSN), err)
	}
	img := imageFor(EnvMySQLImage, DefaultMySQLImage)
	ctx := context.Background()
	c, err := tcmysql.Run(ctx, img,
		tcmysql.WithDatabase("txconsume"), tcmysql.WithUsername("root"), tcmysql.WithPassword("txconsume"),
		// Tests run many pools at once; the server's default of 151 connections is too few.
		testcontainers.WithCmd("mysqld", "--max-connections=1000"),
		// The official image's ready line, as the module waits for it, but with a longer deadline.
		readyLog("port: 3306  MySQL Community Server"),
		testcontainers.WithLabels(ownerLabels()),
		loopbackPorts("3306/tcp", "33060/tcp"))
	if c != nil {
		track(c)
	}
	if err != nil {
		return "", startFailed("mysql", img, EnvMySQLImage, err)
	}
	addr, err := endpoint(ctx, c, "3306/tcp")
	if err != nil {
		return "", err
	}
	return mysqlDSNFromParts("root", "txconsume", addr, "txconsume"), nil
}

func startRedisContainer() (string, error) {
	if err := dockerAvailable(); err != nil {
		return "", fmt.Errorf("%s and %w", askedFor(EnvRedisAddr), err)
	}
	img := imageFor(EnvRedisImage, DefaultRedisImage)
	ctx := context.Background()
	c, err := testcontainers.Run(ctx, img,
		testcontainers.WithExposedPorts("6379/tcp"),
		testcontainers.WithLabels(ownerLabels()),
		loopbackPorts("6379/tcp"),
		readyLog("Ready to accept connections"))
	if c != nil {
		track(c)
	}
	if err != nil {
		return "", startFailed("redis", img, EnvRedisImage, err)
	}
	return endpoint(ctx, c, "6379/tcp")
}

// startRocketMQContainers starts a namesrv and a broker on a network of their own. Clients learn
// the broker's address from the namesrv, so the broker must announce one that reaches it from the
// host: it listens on a free host port inside its container, that port is published on the same
// number, and brokerIP1 is 127.0.0.1. A broker on the default 10911 (scripts/services.sh) is never
// in the way.
func startRocketMQContainers() (namesrv, broker string, err error) {
	if err := dockerAvailable(); err != nil {
		return "", "", fmt.Errorf("%s and %w", askedFor(EnvRocketMQNamesrv), err)
	}
	img := imageFor(EnvRocketMQImage, DefaultRocketMQImage)
	ctx := context.Background()
	nw, err := network.New(ctx, network.WithLabels(ownerLabels()))
	if err != nil {
		return "", "", fmt.Errorf("docker network: %w", err)
	}
	started.Lock()
	started.networks = append(started.networks, nw)
	started.Unlock()

	heap := testcontainers.WithEnv(map[string]string{"JAVA_OPT_EXT": "-Xms256m -Xmx512m"})
	ns, err := testcontainers.Run(ctx, img,
		testcontainers.WithCmd("sh", "mqnamesrv"),
		heap,
		testcontainers.WithExposedPorts("9876/tcp"),
		testcontainers.WithLabels(ownerLabels()),
		loopbackPorts("9876/tcp"),
		network.WithNetwork([]string{"namesrv"}, nw),
		readyLog("The Name Server boot success"))
	if ns != nil {
		track(ns)
	}
	if err != nil {
		return "", "", startFailed("rocketmq namesrv", img, EnvRocketMQImage, err)
	}
	namesrv, err = endpoint(ctx, ns, "9876/tcp")
	if err != nil {
		return "", "", err
	}

	// Between picking a free port and the engine binding it, another process may take it: try again.
	var errs []error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return "", "", err
		}
		broker, err = startBroker(ctx, img, nw, port, heap)
		if err == nil {
			return namesrv, broker, nil
		}
		errs = append(errs, err)
		if !strings.Contains(err.Error(), "address already in use") && !strings.Contains(err.Error(), "port is already allocated") {
			break
		}
	}
	return "", "", startFailed("rocketmq broker", img, EnvRocketMQImage, errors.Join(errs...))
}

func startBroker(ctx context.Context, img string, nw *testcontainers.DockerNetwork, port int,
	heap testcontainers.CustomizeRequestOption,
) (string, error) {
	conf := strings.Join([]string{
		"brokerClusterName=DefaultCluster", "brokerName=broker-a", "brokerId=0",
		"brokerIP1=127.0.0.1", "listenPort=" + strconv.Itoa(port),
		"autoCreateTopicEnable=true", "autoCreateSubscriptionGroup=true",
		// A send waits in the broker's queue up to this long before the broker answers "busy"
		// (default 200ms): on a loaded two-core machine a containerised broker needs longer.
		"waitTimeMillsInSendQueue=3000",
	}, "\n") + "\n"
	containerPort := strconv.Itoa(port) + "/tcp"
	c, err := testcontainers.Run(ctx, img,
		testcontainers.WithCmd("sh", "mqbroker", "-n", "namesrv:9876", "-c", "/home/rocketmq/broker.conf"),
		testcontainers.WithFiles(testcontainers.ContainerFile{
			Reader: strings.NewReader(conf), ContainerFilePath: "/home/rocketmq/broker.conf", FileMode: 0o644,
		}),
		heap,
		testcontainers.WithExposedPorts(containerPort),
		testcontainers.WithLabels(ownerLabels()),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = dockernet.PortMap{
				dockernet.MustParsePort(containerPort): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(port)}},
			}
		}),
		network.WithNetwork([]string{"broker"}, nw),
		readyLog("boot success"))
	if c != nil {
		track(c)
	}
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// freePort returns a loopback port that nothing listens on at the moment.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// processAlive reports whether a process with this pid runs. Only "no such process" counts as
// gone: a process that cannot be signalled (another user's, or an OS without signal 0) is left be.
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || (!errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH))
}
