package rmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// lookupTimeout bounds one resolution of the name server host names.
const lookupTimeout = 5 * time.Second

// hostResolver gives the client the name server addresses as IP:port, resolving host names each
// time the client asks: at start, and then every 2 minutes when the client refreshes its list.
// The client's own passthrough resolver accepts only IP addresses ("IP addr error"), which rules
// out the service names of Kubernetes and DNS-based failover.
type hostResolver struct {
	addrs []string // host:port as configured
	log   *slog.Logger

	mu   sync.Mutex
	last map[string][]string // configured address -> its last resolution, used when a lookup fails
}

var _ primitive.NsResolver = (*hostResolver)(nil)

func newHostResolver(addrs []string, log *slog.Logger) *hostResolver {
	return &hostResolver{addrs: addrs, log: log, last: map[string][]string{}}
}

// Resolve implements primitive.NsResolver.
func (r *hostResolver) Resolve() []string {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	out, err := r.lookup(ctx)
	if err != nil {
		r.log.Warn("rmq: cannot resolve the name servers; keeping the addresses resolved before", slog.Any("error", err))
	}
	return out
}

// Description implements primitive.NsResolver.
func (r *hostResolver) Description() string {
	return "name servers " + strings.Join(r.addrs, ";") + " (host names resolved by DNS)"
}

// lookup resolves every configured address. An address whose host cannot be resolved now keeps
// its previous resolution; the error reports the failures, and is non-nil also when some
// addresses resolved.
func (r *hostResolver) lookup(ctx context.Context) ([]string, error) {
	var out []string
	var errs []error
	for _, a := range r.addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("rmq: name server %q is not host:port", a))
			continue
		}
		if net.ParseIP(host) != nil {
			out = append(out, a)
			continue
		}
		ips, err := net.DefaultResolver.LookupHost(ctx, host)
		r.mu.Lock()
		if err == nil && len(ips) > 0 {
			resolved := make([]string, len(ips))
			for i, ip := range ips {
				resolved[i] = net.JoinHostPort(ip, port)
			}
			r.last[a] = resolved
		} else {
			errs = append(errs, fmt.Errorf("%w: cannot resolve the host of name server %s: %w", ErrNameServerUnreachable, a, err))
		}
		out = append(out, r.last[a]...)
		r.mu.Unlock()
	}
	return out, errors.Join(errs...)
}

// NewResolver returns a name server resolver for the client's producers and consumers
// (producer.WithNsResolver, consumer.WithNsResolver) that accepts host names: each host:port is
// resolved whenever the client asks (at start, then every 2 minutes), and a host that cannot be
// resolved keeps its previous addresses, with a warning on logger (nil: slog.Default()). The
// client's own passthrough resolver accepts IP addresses only. Consumer uses it for
// WithNameServers.
func NewResolver(nameServers []string, logger *slog.Logger) primitive.NsResolver {
	if logger == nil {
		logger = slog.Default()
	}
	return newHostResolver(append([]string(nil), nameServers...), logger)
}
