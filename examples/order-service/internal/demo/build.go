package demo

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
)

// ServicePackage is the import path of the order-service command.
const ServicePackage = "github.com/txconsume/txconsume/examples/order-service/cmd/order-service"

// BuildService compiles the order-service command into dir with the go tool on PATH and returns
// the binary's path. It must run inside this module (the demo is started with go run or go
// test from it), where the import path resolves.
func BuildService(ctx context.Context, dir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("demo: the go tool is needed to build the service: %w", err)
	}
	bin := filepath.Join(dir, "order-service")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, ServicePackage)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("demo: go build %s: %w\n%s", ServicePackage, err, out)
	}
	return bin, nil
}
