package testenv

import (
	"context"
	"os"
	"regexp"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
)

// TestComposeFile validates docker-compose.yml and its local-image override against the Compose
// specification, and checks what tests and scripts rely on: Debian's docker-compose 1.29 can read
// them too, the services publish on loopback, on the ports scripts/services.sh uses unless
// TXCONSUME_COMPOSE_*_PORT move them, the broker listens on the port it is published on, and the
// override names the images build-images.sh makes.
func TestComposeFile(t *testing.T) {
	load := func(t *testing.T, env map[string]string, files ...string) *types.Project {
		t.Helper()
		var envList []string
		for k, v := range env {
			envList = append(envList, k+"="+v)
		}
		opts, err := cli.NewProjectOptions(files, cli.WithWorkingDirectory("../.."),
			cli.WithName("txconsume"), cli.WithEnv(envList))
		require.NoError(t, err)
		project, err := opts.LoadProject(context.Background())
		require.NoError(t, err, "%v is not a valid Compose project", files)
		return project
	}
	published := func(t *testing.T, project *types.Project, service string) map[string]types.ServicePortConfig {
		t.Helper()
		svc, ok := project.Services[service]
		require.True(t, ok, "docker-compose.yml has no service %q", service)
		ports := map[string]types.ServicePortConfig{}
		for _, p := range svc.Ports {
			require.Equal(t, "127.0.0.1", p.HostIP, "service %s publishes %s beyond loopback", service, p.Published)
			ports[p.Published] = p
		}
		return ports
	}
	script := func(t *testing.T, path, pattern string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		m := regexp.MustCompile(pattern).FindSubmatch(b)
		require.NotNil(t, m, "%s has no match for %s", path, pattern)
		return string(m[1])
	}
	servicesPort := func(t *testing.T, name string) string {
		return script(t, "../../scripts/services.sh", `(?m)^`+name+`=(\d+)$`)
	}

	t.Run("docker-compose 1.29 knows every top-level key", func(t *testing.T) {
		// 1.29 rejects keys of the specification it predates, `name` for one: the scripts give the
		// project name with -p instead.
		known := regexp.MustCompile(`^(version|services|networks|volumes|configs|secrets|x-.*)$`)
		for _, file := range []string{"../../docker-compose.yml", "../../scripts/docker/compose.local.yml"} {
			b, err := os.ReadFile(file)
			require.NoError(t, err)
			for _, m := range regexp.MustCompile(`(?m)^([^\s#][^:]*):`).FindAllSubmatch(b, -1) {
				require.Regexp(t, known, string(m[1]), "%s: top-level key %q", file, m[1])
			}
		}
	})

	t.Run("by default it publishes the ports of scripts/services.sh", func(t *testing.T) {
		project := load(t, nil, "../../docker-compose.yml")
		for service, variable := range map[string]string{
			"mysql": "MYSQL_PORT", "redis": "REDIS_PORT", "namesrv": "NAMESRV_PORT", "broker": "BROKER_PORT",
		} {
			require.Contains(t, published(t, project, service), servicesPort(t, variable), "service %s", service)
		}
	})

	t.Run("the port variables move every published port", func(t *testing.T) {
		project := load(t, map[string]string{
			"TXCONSUME_COMPOSE_MYSQL_PORT": "23306", "TXCONSUME_COMPOSE_REDIS_PORT": "26379",
			"TXCONSUME_COMPOSE_NAMESRV_PORT": "29876", "TXCONSUME_COMPOSE_BROKER_PORT": "30911",
		}, "../../docker-compose.yml")
		for service, port := range map[string]string{"mysql": "23306", "redis": "26379", "namesrv": "29876", "broker": "30911"} {
			ports := published(t, project, service)
			require.Len(t, ports, 1, "service %s publishes more than one port", service)
			require.Contains(t, ports, port, "service %s", service)
		}
		// The broker announces 127.0.0.1:listenPort; listenPort comes from BROKER_PORT and must be
		// the published port, inside the container too.
		broker := project.Services["broker"]
		require.Equal(t, "30911", *broker.Environment["BROKER_PORT"])
		require.Equal(t, uint32(30911), published(t, project, "broker")["30911"].Target)
		require.Contains(t, broker.Command[len(broker.Command)-1], "listenPort=${BROKER_PORT}")
	})

	t.Run("the override points every service at a local image", func(t *testing.T) {
		official := load(t, nil, "../../docker-compose.yml")
		local := load(t, nil, "../../docker-compose.yml", "../../scripts/docker/compose.local.yml")
		lib := "../../scripts/docker/lib.sh"
		want := map[string]string{
			"mysql":   script(t, lib, `(?m)^LOCAL_MYSQL_IMAGE=(\S+)$`),
			"redis":   script(t, lib, `(?m)^LOCAL_REDIS_IMAGE=(\S+)$`),
			"namesrv": script(t, lib, `(?m)^LOCAL_ROCKETMQ_IMAGE=(\S+)$`),
			"broker":  script(t, lib, `(?m)^LOCAL_ROCKETMQ_IMAGE=(\S+)$`),
		}
		require.Len(t, local.Services, len(official.Services), "the override adds or drops services")
		for name := range official.Services {
			require.Equal(t, want[name], local.Services[name].Image, "service %s", name)
			require.Equal(t, official.Services[name].Command, local.Services[name].Command, "service %s", name)
		}
	})

	t.Run("the local RocketMQ image has the jars scripts/services.sh runs", func(t *testing.T) {
		image := script(t, "../../scripts/docker/lib.sh", `(?m)^LOCAL_ROCKETMQ_IMAGE=\S+:(\S+)$`)
		native := script(t, "../../scripts/services.sh", `(?m)^ROCKETMQ_VERSION=(\S+)$`)
		require.Equal(t, native, image)
	})
}
