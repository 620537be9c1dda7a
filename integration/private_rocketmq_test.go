package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/admin"
	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// privateRocketMQ is a namesrv and a broker of the test's own, on free loopback ports, started
// from the RocketMQ jars that scripts/services.sh fetches. Scenarios that stop or restart the
// broker use one, never the shared broker other tests and people use.
type privateRocketMQ struct {
	t                     *testing.T
	lib, dir              string
	nsPort, brokerPort    int
	namesrvLog, brokerLog string

	ready   chan struct{} // closed when the first start is over, with err set if it failed
	err     error
	missing bool // err says that java or the jars are missing

	mu              sync.Mutex
	namesrv, broker *exec.Cmd
}

func (p *privateRocketMQ) NameServer() string { return "127.0.0.1:" + strconv.Itoa(p.nsPort) }
func (p *privateRocketMQ) Broker() string     { return "127.0.0.1:" + strconv.Itoa(p.brokerPort) }

// launchPrivateRocketMQ starts a namesrv and then a broker in the background (a JVM takes
// seconds to boot, which other scenarios can use); Ready waits for them. Both are killed when the
// test ends.
func launchPrivateRocketMQ(t *testing.T) *privateRocketMQ {
	t.Helper()
	p := &privateRocketMQ{t: t, dir: t.TempDir(), ready: make(chan struct{})}
	t.Cleanup(func() {
		<-p.ready
		p.mu.Lock()
		defer p.mu.Unlock()
		kill(p.broker)
		kill(p.namesrv)
	})
	fail := func(missing bool, err error) *privateRocketMQ {
		p.err, p.missing = err, missing
		close(p.ready)
		return p
	}
	if testing.Short() {
		return fail(true, errors.New("-short"))
	}
	if _, err := exec.LookPath("java"); err != nil {
		return fail(true, err)
	}
	out, err := exec.Command("../scripts/services.sh", "rocketmq-lib").Output()
	if err != nil {
		return fail(true, fmt.Errorf("scripts/services.sh rocketmq-lib: %w", err))
	}
	p.lib = strings.TrimSpace(string(out))
	p.nsPort = freePort(t, 0)
	p.brokerPort = freePort(t, 2) // the broker also listens on port-2 (VIP channel) and port+1 (HA)
	for _, d := range []string{"home/logs", "store"} {
		if err := os.MkdirAll(filepath.Join(p.dir, d), 0o755); err != nil {
			return fail(false, err)
		}
	}
	writeFile(t, filepath.Join(p.dir, "namesrv.conf"), fmt.Sprintf("listenPort=%d\nbindAddress=127.0.0.1\n", p.nsPort))
	writeFile(t, filepath.Join(p.dir, "broker.conf"), strings.Join([]string{
		"brokerClusterName=PrivateCluster",
		"brokerName=broker-private",
		"brokerId=0",
		"brokerIP1=127.0.0.1",
		"bindAddress=127.0.0.1",
		"listenPort=" + strconv.Itoa(p.brokerPort),
		"namesrvAddr=" + p.NameServer(),
		"storePathRootDir=" + filepath.Join(p.dir, "store"),
		"storePathCommitLog=" + filepath.Join(p.dir, "store", "commitlog"),
		"autoCreateTopicEnable=true",
		"autoCreateSubscriptionGroup=true",
		"mappedFileSizeCommitLog=67108864",
		"diskMaxUsedSpaceRatio=95",
	}, "\n")+"\n")
	p.namesrvLog = filepath.Join(p.dir, "namesrv.log")
	p.brokerLog = filepath.Join(p.dir, "broker.log")
	go func() {
		defer close(p.ready)
		p.mu.Lock()
		defer p.mu.Unlock()
		// The broker registers with the namesrv at start and then only every 30s: start it once
		// the namesrv listens.
		if p.namesrv, p.err = p.java("org.apache.rocketmq.namesrv.NamesrvStartup", "namesrv.conf", p.namesrvLog); p.err != nil {
			return
		}
		if p.err = waitPort(p.nsPort, p.namesrvLog); p.err != nil {
			return
		}
		p.err = p.startBroker()
	}()
	return p
}

// Ready waits until the namesrv and the broker listen; it skips the test (fails it under
// CI=true) when java or the jars are missing.
func (p *privateRocketMQ) Ready(t *testing.T) {
	t.Helper()
	<-p.ready
	if p.missing {
		unavailableHere(t, "a private RocketMQ (java and the jars of scripts/services.sh rocketmq-lib)", p.err)
	}
	if p.err != nil {
		t.Fatalf("private RocketMQ: %v", p.err)
	}
}

// StartBroker starts the broker again on its port and store, and waits until it listens.
func (p *privateRocketMQ) StartBroker() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.startBroker(); err != nil {
		p.t.Fatalf("private RocketMQ: %v", err)
	}
}

func (p *privateRocketMQ) startBroker() error {
	var err error
	if p.broker, err = p.java("org.apache.rocketmq.broker.BrokerStartup", "broker.conf", p.brokerLog); err != nil {
		return err
	}
	return waitPort(p.brokerPort, p.brokerLog)
}

// KillBroker kills the broker with SIGKILL, as a crash would, and waits until it is gone.
func (p *privateRocketMQ) KillBroker() {
	p.mu.Lock()
	defer p.mu.Unlock()
	kill(p.broker)
}

// CreateTopic creates topic with queues queues on the private broker, retrying while the broker
// registers with the namesrv, and waits until the namesrv publishes its route.
func (p *privateRocketMQ) CreateTopic(topic string, queues int) {
	p.t.Helper()
	adm, err := admin.NewAdmin(admin.WithResolver(primitive.NewPassthroughResolver([]string{p.NameServer()})))
	if err != nil {
		p.t.Fatal(err)
	}
	defer adm.Close()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = adm.CreateTopic(ctx, admin.WithTopicCreate(topic), admin.WithBrokerAddrCreate(p.Broker()),
			admin.WithReadQueueNums(queues), admin.WithWriteQueueNums(queues))
		if err == nil {
			var mqs []*primitive.MessageQueue
			mqs, err = adm.FetchPublishMessageQueues(ctx, topic)
			if err == nil && len(mqs) != queues {
				err = fmt.Errorf("%d queues published", len(mqs))
			}
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("private broker: topic %s not served after 90s: %v\n%s", topic, err, tail(p.brokerLog))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// java starts a RocketMQ main class with the small heap and JDK 17 flags of scripts/services.sh
// (C1 only and the serial collector: these JVMs live for a minute and must boot fast).
func (p *privateRocketMQ) java(class, conf, logFile string) (*exec.Cmd, error) {
	logOut, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	args := []string{"-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Duser.home=" + filepath.Join(p.dir, "home"),
		"--add-exports", "java.base/sun.nio.ch=ALL-UNNAMED", "--add-opens", "java.base/java.nio=ALL-UNNAMED",
		"--add-opens", "java.base/java.lang=ALL-UNNAMED",
		"-cp", filepath.Join(p.lib, "*"), class, "-c", filepath.Join(p.dir, conf)}
	cmd := exec.Command("java", args...)
	cmd.Env = append(os.Environ(), "ROCKETMQ_HOME="+filepath.Join(p.dir, "home"))
	cmd.Stdout, cmd.Stderr = logOut, logOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logOut.Close()
		return nil, fmt.Errorf("start %s: %w", class, err)
	}
	go func() {
		_ = cmd.Wait()
		_ = logOut.Close()
	}()
	return cmd, nil
}

func waitPort(port int, logFile string) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port %d not open after 90s\n%s", port, tail(logFile))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kill SIGKILLs the process group of a process started by this test and waits until it is gone.
func kill(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	for i := 0; i < 300; i++ {
		if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a free loopback port with the below ports under it and the one above free too.
// It picks from 20000-32767, under Linux's range of ephemeral ports (32768-60999): a port from
// that range can be taken by any outgoing connection on the machine while the broker restarts.
func freePort(t *testing.T, below int) int {
	t.Helper()
	for range 200 {
		port := 20000 + below + rand.IntN(12000)
		free := true
		for q := port - below; q <= port+1; q++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				free = false
				break
			}
			_ = l.Close()
		}
		if free {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// unavailableHere skips a test locally and fails it under CI=true, as testenv does for services.
func unavailableHere(t *testing.T, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true but unavailable: %v", what, err)
	}
	t.Skipf("%s unavailable: %v", what, err)
}
