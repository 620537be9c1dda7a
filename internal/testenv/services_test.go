package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeDocker stands in for the docker CLI in TestServicesPlan. FAKE_ENGINE=up makes `docker info`
// answer; FAKE_COMPOSE=v2 gives it a Compose v2 plugin, anything else answers `docker compose` as
// Debian's CLI does; FAKE_IMAGES lists the images present; pulls fail as without Docker Hub. Every
// call is appended to $FAKE_CALLS.
const fakeDocker = `#!/bin/sh
echo "$*" >>"$FAKE_CALLS"
case "$1" in
  info) [ "$FAKE_ENGINE" = up ]; exit ;;
  compose)
    if [ "$FAKE_COMPOSE" = v2 ]; then echo 2.40.3; exit 0; fi
    echo "unknown flag: --short" >&2; exit 125 ;;
  image)
    for img in $FAKE_IMAGES; do [ "$img" = "$3" ] && exit 0; done
    exit 1 ;;
  pull)
    echo 'Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host' >&2
    exit 1 ;;
esac
exit 1
`

// TestServicesPlan checks the path scripts/services.sh takes when a Docker engine answers: the
// compose path only where it can work, and otherwise the native services with one line saying why.
// A docker CLI without compose once made `make test` fail with "unknown shorthand flag: 'f' in -f".
func TestServicesPlan(t *testing.T) {
	bash, err := exec.LookPath("bash")
	require.NoError(t, err)
	script, err := filepath.Abs("../../scripts/services.sh")
	require.NoError(t, err)

	type machine struct {
		apt       bool     // apt-get on PATH: a Debian machine
		engine    bool     // docker info answers
		composeV2 bool     // docker compose is Compose v2
		compose1  string   // the version of a docker-compose 1.x on PATH (Debian's is 1.29.2)
		images    []string // images present
		env       []string // TXCONSUME_SERVICES and friends
	}
	// compose has Oracle MySQL and no MariaDB: the matrix runs its mysql leg alone.
	mysqlOnly := []string{"TXCONSUME_SERVERS=mysql"}
	// plan runs `services.sh plan` on the machine described, with PATH holding only the fakes and
	// the few tools the script needs, and returns its answer, its log and the docker calls made.
	plan := func(t *testing.T, m machine) (answer, logged, calls string, err error) {
		t.Helper()
		dir := t.TempDir()
		bin := filepath.Join(dir, "bin")
		require.NoError(t, os.Mkdir(bin, 0o755))
		for _, tool := range []string{"basename", "cat", "cut", "date", "dirname", "env", "flock", "grep", "head",
			"id", "ls", "mkdir", "readlink", "rm", "sed", "sleep", "sort", "tail", "touch", "tr", "uname"} {
			if path, err := exec.LookPath(tool); err == nil {
				require.NoError(t, os.Symlink(path, filepath.Join(bin, tool)))
			}
		}
		write := func(name, text string) {
			require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte(text), 0o755))
		}
		write("docker", fakeDocker)
		if m.apt {
			write("apt-get", "#!/bin/sh\nexit 0\n")
		}
		if m.compose1 != "" {
			write("docker-compose", "#!/bin/sh\necho "+m.compose1+"\n")
		}
		engine, compose := "down", "none"
		if m.engine {
			engine = "up"
		}
		if m.composeV2 {
			compose = "v2"
		}
		callsFile := filepath.Join(dir, "calls")
		cmd := exec.Command(bash, script, "plan")
		cmd.Env = append([]string{
			"PATH=" + bin, "HOME=" + dir, "TXCONSUME_SERVICES_DIR=" + filepath.Join(dir, "state"),
			"FAKE_ENGINE=" + engine, "FAKE_COMPOSE=" + compose, "FAKE_IMAGES=" + strings.Join(m.images, " "),
			"FAKE_CALLS=" + callsFile,
		}, m.env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err = cmd.Run()
		b, _ := os.ReadFile(callsFile)
		return strings.TrimSpace(stdout.String()), stderr.String(), string(b), err
	}
	official := []string{"mysql:8.4", "redis:7", "apache/rocketmq:5.3.1"}
	local := []string{"txconsume-local/mysql:9.7", "txconsume-local/redis:8", "txconsume-local/rocketmq:5.3.3"}

	cases := []struct {
		name      string
		machine   machine
		answer    string   // native or docker
		logged    []string // in what the script says
		notLogged string
		noCalls   bool // docker is never asked
	}{
		{name: "a Debian machine keeps native services although an engine answers",
			machine: machine{apt: true, engine: true, composeV2: true, images: official}, answer: "native",
			logged: []string{"native services are the default", "TXCONSUME_SERVICES=docker"}},
		{name: "a docker CLI without compose falls back to native services",
			machine: machine{engine: true, images: official, env: mysqlOnly}, answer: "native",
			logged: []string{"falling back to native services: no compose command", "docker-compose is not installed"}},
		{name: "Debian's docker-compose 1.29 takes the compose path",
			machine: machine{engine: true, compose1: "1.29.2", images: official, env: mysqlOnly}, answer: "docker",
			logged: []string{"using docker-compose with"}},
		{name: "a docker-compose older than 1.27 falls back to native services",
			machine: machine{engine: true, compose1: "1.25.0", images: official, env: mysqlOnly}, answer: "native",
			logged: []string{"falling back to native services", "docker-compose is 1.25.0 (1.27 or later"}},
		{name: "Compose v2 is preferred to docker-compose 1.29",
			machine: machine{engine: true, composeV2: true, compose1: "1.29.2", images: official, env: mysqlOnly},
			answer:  "docker", logged: []string{"using docker compose with"}},
		{name: "images neither present nor pullable fall back to native services",
			machine: machine{engine: true, composeV2: true, env: mysqlOnly}, answer: "native",
			logged: []string{"cannot be pulled", "no such host", "scripts/docker/build-images.sh"}},
		{name: "local images take the compose path with the override file",
			machine: machine{engine: true, composeV2: true, images: local, env: mysqlOnly}, answer: "docker",
			logged: []string{"scripts/docker/compose.local.yml"}},
		{name: "official images take the compose path as it is",
			machine: machine{engine: true, composeV2: true, images: official, env: mysqlOnly}, answer: "docker",
			logged: []string{"docker-compose.yml"}, notLogged: "compose.local.yml"},
		{name: "the matrix's MariaDB leg keeps native services",
			machine: machine{engine: true, composeV2: true, images: official}, answer: "native",
			logged: []string{"falling back to native services: docker-compose.yml has no MariaDB"}},
		{name: "a MariaDB named by its variable leaves the rest to compose",
			machine: machine{engine: true, composeV2: true, images: official, env: []string{"TXCONSUME_MARIADB_DSN=x"}},
			answer:  "docker"},
		{name: "no engine means native services without a word about Docker",
			machine: machine{composeV2: true, images: official}, answer: "native", notLogged: "docker"},
		{name: "TXCONSUME_NO_DOCKER=1 never asks docker",
			machine: machine{engine: true, composeV2: true, images: official, env: []string{"TXCONSUME_NO_DOCKER=1"}},
			answer:  "native", noCalls: true},
		{name: "TXCONSUME_SERVICES=native never asks docker",
			machine: machine{engine: true, composeV2: true, images: official, env: []string{"TXCONSUME_SERVICES=native"}},
			answer:  "native", noCalls: true},
		{name: "TXCONSUME_SERVICES=docker asks for compose on any machine",
			machine: machine{apt: true, env: []string{"TXCONSUME_SERVICES=docker", "TXCONSUME_SERVERS=mysql"}},
			answer:  "docker"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			answer, logged, calls, err := plan(t, c.machine)
			require.NoError(t, err, logged)
			require.Equal(t, c.answer, answer, logged)
			for _, want := range c.logged {
				require.Contains(t, logged, want)
			}
			require.LessOrEqual(t, strings.Count(logged, "\n"), 1, "one line says why: %q", logged)
			if c.notLogged != "" {
				require.NotContains(t, logged, c.notLogged)
			}
			if c.noCalls {
				require.Empty(t, calls)
			}
		})
	}
	t.Run("TXCONSUME_SERVICES=docker with MariaDB in the matrix is an error", func(t *testing.T) {
		_, logged, _, err := plan(t, machine{apt: true, env: []string{"TXCONSUME_SERVICES=docker"}})
		require.Error(t, err)
		require.Contains(t, logged, "docker-compose.yml has no MariaDB")
	})
	t.Run("an unknown TXCONSUME_SERVICES is an error", func(t *testing.T) {
		_, logged, _, err := plan(t, machine{env: []string{"TXCONSUME_SERVICES=podman"}})
		require.Error(t, err)
		require.Contains(t, logged, "expected auto, native or docker")
	})
}
