package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/oteltxconsume"
)

// telemetry is the service's metrics pipeline: txconsume's OpenTelemetry instrumentation, read by
// the OpenTelemetry Prometheus exporter, served on /metrics with /readyz beside it.
type telemetry struct {
	provider *sdkmetric.MeterProvider
	inst     *oteltxconsume.Instrumentation
	server   *http.Server
	done     chan error
}

// newTelemetry builds the pipeline. The registry is the service's own, not Prometheus's global
// one, so that two services in one process (the tests) do not collide.
func newTelemetry() (*telemetry, error) {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return nil, fmt.Errorf("service: prometheus exporter: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	inst, err := oteltxconsume.New(oteltxconsume.WithMeterProvider(provider))
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	return &telemetry{
		provider: provider,
		inst:     inst,
		server:   &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		done:     make(chan error, 1),
	}, nil
}

// hooks returns the instrumentation's hooks, or none when metrics are off.
func (t *telemetry) hooks() []txconsume.Hooks {
	if t == nil {
		return nil
	}
	return []txconsume.Hooks{t.inst.Hooks()}
}

// serve starts the HTTP server on addr, with ready answering /readyz (200 when it returns nil,
// 503 with the error otherwise), and logs where it listens.
func (t *telemetry) serve(addr string, ready func(context.Context) error, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("service: metrics listener: %w", err)
	}
	t.server.Handler.(*http.ServeMux).HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	log.Info("serving metrics", "addr", ln.Addr().String(), "paths", "/metrics /readyz")
	go func() { t.done <- t.server.Serve(ln) }()
	return nil
}

// close stops the server and the meter provider.
func (t *telemetry) close(ctx context.Context) error {
	err := t.server.Shutdown(ctx)
	if serveErr := <-t.done; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return errors.Join(err, t.provider.Shutdown(ctx))
}
