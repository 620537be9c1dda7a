package demo

import (
	"context"
	"fmt"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
)

// ServicePackage and ShippingServicePackage are the import paths of the services' commands.
const (
	ServicePackage         = "github.com/txconsume/txconsume/examples/order-service/cmd/order-service"
	ShippingServicePackage = "github.com/txconsume/txconsume/examples/order-service/cmd/shipping-service"
)

// BuildService compiles the order-service command into dir with the go tool on PATH and returns
// the binary's path. It must run inside this module (the demo is started with go run or go
// test from it), where the import path resolves.
func BuildService(ctx context.Context, dir string) (string, error) {
	return build(ctx, dir, ServicePackage)
}

// BuildShippingService compiles the shipping-service command into dir, as BuildService does.
func BuildShippingService(ctx context.Context, dir string) (string, error) {
	return build(ctx, dir, ShippingServicePackage)
}

func build(ctx context.Context, dir, pkg string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("demo: the go tool is needed to build the services: %w", err)
	}
	bin := filepath.Join(dir, path.Base(pkg))
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("demo: go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}
