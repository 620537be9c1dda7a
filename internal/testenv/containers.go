package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"net/netip"

	"github.com/moby/moby/api/types/container"
	dockernet "github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	tcmysql "github.com/testcontainers/testcontainers-go/modules/mysql"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// The containers live as long as the test binary; testcontainers' reaper removes them after it.

const (
	mysqlImage    = "mysql:8.4"
	redisImage    = "redis:7"
	rocketmqImage = "apache/rocketmq:5.3.1"
)

var dockerCheck struct {
	once sync.Once
	err  error
}

// dockerAvailable reports whether a Docker engine answers, asking it once per test binary.
func dockerAvailable() error {
	dockerCheck.once.Do(func() {
		defer func() {
			if r := recover(); r != nil {
				dockerCheck.err = fmt.Errorf("no Docker engine: %v", r)
			}
		}()
		provider, err := testcontainers.ProviderDefault.GetProvider()
		if err != nil {
			dockerCheck.err = fmt.Errorf("no Docker engine: %w", err)
			return
		}
		defer provider.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := provider.Health(ctx); err != nil {
			dockerCheck.err = fmt.Errorf("no Docker engine: %w", err)
		}
	})
	return dockerCheck.err
}

func startMySQLContainer() (string, error) {
	if err := dockerAvailable(); err != nil {
		return "", fmt.Errorf("%s unset and %w", EnvMySQLDSN, err)
	}
	ctx := context.Background()
	c, err := tcmysql.Run(ctx, mysqlImage,
		tcmysql.WithDatabase("txconsume"), tcmysql.WithUsername("root"), tcmysql.WithPassword("txconsume"))
	if err != nil {
		return "", fmt.Errorf("start %s: %w", mysqlImage, err)
	}
	addr, err := c.PortEndpoint(ctx, "3306/tcp", "")
	if err != nil {
		return "", err
	}
	return mysqlDSNFromParts("root", "txconsume", addr, "txconsume"), nil
}

func startRedisContainer() (string, error) {
	if err := dockerAvailable(); err != nil {
		return "", fmt.Errorf("%s unset and %w", EnvRedisAddr, err)
	}
	ctx := context.Background()
	c, err := testcontainers.Run(ctx, redisImage,
		testcontainers.WithExposedPorts("6379/tcp"),
		testcontainers.WithWaitStrategy(wait.ForLog("Ready to accept connections")))
	if err != nil {
		return "", fmt.Errorf("start %s: %w", redisImage, err)
	}
	return c.PortEndpoint(ctx, "6379/tcp", "")
}

// startRocketMQContainers starts a namesrv and a broker on a private network. The broker announces
// 127.0.0.1:10911 to clients, so its port is published on the same host port (as in docker-compose.yml).
func startRocketMQContainers() (namesrv, broker string, err error) {
	if err := dockerAvailable(); err != nil {
		return "", "", fmt.Errorf("%s unset and %w", EnvRocketMQNamesrv, err)
	}
	ctx := context.Background()
	nw, err := network.New(ctx)
	if err != nil {
		return "", "", fmt.Errorf("docker network: %w", err)
	}
	ns, err := testcontainers.Run(ctx, rocketmqImage,
		testcontainers.WithCmd("sh", "mqnamesrv"),
		testcontainers.WithExposedPorts("9876/tcp"),
		network.WithNetwork([]string{"namesrv"}, nw),
		testcontainers.WithWaitStrategy(wait.ForLog("The Name Server boot success").WithStartupTimeout(2*time.Minute)))
	if err != nil {
		return "", "", fmt.Errorf("start rocketmq namesrv: %w", err)
	}
	namesrv, err = ns.PortEndpoint(ctx, "9876/tcp", "")
	if err != nil {
		return "", "", err
	}
	conf := strings.Join([]string{
		"brokerClusterName=DefaultCluster", "brokerName=broker-a", "brokerId=0",
		"brokerIP1=127.0.0.1", "listenPort=10911", "autoCreateTopicEnable=true",
	}, "\n") + "\n"
	_, err = testcontainers.Run(ctx, rocketmqImage,
		testcontainers.WithCmd("sh", "mqbroker", "-n", "namesrv:9876", "-c", "/home/rocketmq/broker.conf"),
		testcontainers.WithFiles(testcontainers.ContainerFile{
			Reader: strings.NewReader(conf), ContainerFilePath: "/home/rocketmq/broker.conf", FileMode: 0o644,
		}),
		testcontainers.WithEnv(map[string]string{"JAVA_OPT_EXT": "-Xms256m -Xmx512m"}),
		testcontainers.WithExposedPorts("10911/tcp"),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = dockernet.PortMap{
				dockernet.MustParsePort("10911/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: "10911"}},
			}
		}),
		network.WithNetwork([]string{"broker"}, nw),
		testcontainers.WithWaitStrategy(wait.ForLog("boot success").WithStartupTimeout(2*time.Minute)))
	if err != nil {
		return "", "", errors.Join(fmt.Errorf("start rocketmq broker"), err)
	}
	return namesrv, "127.0.0.1:10911", nil
}
