package testenv

import (
	"context"
	"os"
	"regexp"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/stretchr/testify/require"
)

// TestComposeFileMatchesLocalServices validates docker-compose.yml against the Compose
// specification and checks that it publishes the same services on the same loopback ports as
// scripts/services.sh, so tests find them the same way on machines with and without Docker.
func TestComposeFileMatchesLocalServices(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"../../docker-compose.yml"},
		cli.WithWorkingDirectory("../.."), cli.WithName("txconsume"))
	require.NoError(t, err)
	project, err := opts.LoadProject(context.Background())
	require.NoError(t, err, "docker-compose.yml is not a valid Compose file")

	script, err := os.ReadFile("../../scripts/services.sh")
	require.NoError(t, err)
	scriptPort := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `=(\d+)$`).FindSubmatch(script)
		require.NotNil(t, m, "scripts/services.sh defines no %s", name)
		return string(m[1])
	}

	want := map[string]string{
		"mysql":   scriptPort("MYSQL_PORT"),
		"redis":   scriptPort("REDIS_PORT"),
		"namesrv": scriptPort("NAMESRV_PORT"),
		"broker":  scriptPort("BROKER_PORT"),
	}
	for name, port := range want {
		svc, ok := project.Services[name]
		require.True(t, ok, "docker-compose.yml has no service %q", name)
		published := map[string]string{}
		for _, p := range svc.Ports {
			published[p.Published] = p.HostIP
		}
		require.Contains(t, published, port, "service %s does not publish port %s", name, port)
		require.Equal(t, "127.0.0.1", published[port], "service %s publishes %s beyond loopback", name, port)
	}
}
