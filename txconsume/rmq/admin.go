package rmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/txconsume/txconsume/txconsume/rmq/internal/remoting"
)

// Errors of the operator API (Admin) and of the start-up checks (Consumer.Check).
var (
	// ErrNameServerUnreachable: no name server answered.
	ErrNameServerUnreachable = errors.New("rmq: name server unreachable")
	// ErrTopicNotFound: the name servers have no route for the topic: it was never created, or
	// no broker serving it is registered.
	ErrTopicNotFound = errors.New("rmq: topic not found")
	// ErrClusterNotFound: the name servers know no broker of the cluster.
	ErrClusterNotFound = errors.New("rmq: cluster not found")
)

// DefaultCluster is the cluster name a broker registers when its configuration names none
// (brokerClusterName).
const DefaultCluster = "DefaultCluster"

// DefaultTopicQueues is the number of read and write queues CreateTopic gives a topic on each
// broker when TopicConfig.Queues is 0, as RocketMQ's mqadmin updateTopic does.
const DefaultTopicQueues = 8

// RetryTopic returns the topic through which the broker redelivers group's failed messages.
func RetryTopic(group string) string { return "%RETRY%" + group }

// DeadLetterTopic returns the topic to which the broker moves group's messages once they have
// failed more than the maximum number of redeliveries.
func DeadLetterTopic(group string) string { return "%DLQ%" + group }

// Admin performs operator tasks on a RocketMQ cluster found through its name servers: creating
// topics, checking that a topic is routed, reading and replaying dead letters. It speaks the
// broker's remoting protocol directly, one connection per request, and holds nothing between
// calls: it needs no Close and is safe for concurrent use.
type Admin struct {
	nameServers []string
	client      remoting.Client
}

// AdminOption configures an Admin.
type AdminOption func(*Admin)

// WithAdminCredentials signs the requests with an ACL access key and secret key. Default: none.
func WithAdminCredentials(accessKey, secretKey string) AdminOption {
	return func(a *Admin) { a.client.AccessKey, a.client.SecretKey = accessKey, secretKey }
}

// WithAdminTimeout bounds each request (connect, send, answer). Default: 5s.
func WithAdminTimeout(d time.Duration) AdminOption {
	return func(a *Admin) { a.client.Timeout = d }
}

// NewAdmin returns an Admin for the name servers at nameServers (host:port; host names are
// resolved on every request).
func NewAdmin(nameServers []string, opts ...AdminOption) (*Admin, error) {
	if err := checkAddrs(nameServers); err != nil {
		return nil, err
	}
	a := &Admin{nameServers: append([]string(nil), nameServers...)}
	for _, o := range opts {
		o(a)
	}
	return a, nil
}

// checkAddrs accepts host:port addresses with a numeric port.
func checkAddrs(addrs []string) error {
	if len(addrs) == 0 {
		return errors.New("rmq: no name server (WithNameServers)")
	}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			return fmt.Errorf("rmq: name server %q is not host:port", a)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("rmq: name server %q has no valid port", a)
		}
	}
	return nil
}

// askNameServers sends a request to each name server in turn until one answers, and returns that
// answer and its address. When none answers, the error wraps ErrNameServerUnreachable and names
// every address with its cause.
func (a *Admin) askNameServers(ctx context.Context, code int, ext map[string]string) (*remoting.Response, string, error) {
	var errs []string
	for _, addr := range a.nameServers {
		resp, err := a.client.Invoke(ctx, addr, code, ext, nil)
		if err == nil {
			return resp, addr, nil
		}
		errs = append(errs, err.Error())
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", fmt.Errorf("%w: %s (check the address and port given to WithNameServers)",
		ErrNameServerUnreachable, strings.Join(errs, "; "))
}

// topicRoute is a name server's route of a topic.
type topicRoute struct {
	BrokerDatas []brokerData `json:"brokerDatas"`
	QueueDatas  []struct {
		BrokerName     string `json:"brokerName"`
		ReadQueueNums  int    `json:"readQueueNums"`
		WriteQueueNums int    `json:"writeQueueNums"`
		Perm           int    `json:"perm"`
	} `json:"queueDatas"`
}

type brokerData struct {
	Cluster     string            `json:"cluster"`
	BrokerName  string            `json:"brokerName"`
	BrokerAddrs map[string]string `json:"brokerAddrs"` // broker id ("0" is the master) -> address
}

func (b brokerData) master() string { return b.BrokerAddrs["0"] }

// route returns the route of topic, or an error wrapping ErrTopicNotFound or
// ErrNameServerUnreachable.
func (a *Admin) route(ctx context.Context, topic string) (*topicRoute, error) {
	resp, addr, err := a.askNameServers(ctx, remoting.CodeGetRouteInfoByTopic, map[string]string{"topic": topic})
	if err != nil {
		return nil, err
	}
	if resp.Code == remoting.TopicNotExist {
		return nil, fmt.Errorf("%w: name server %s has no route for topic %q", ErrTopicNotFound, addr, topic)
	}
	if err := remoting.Expect(addr, resp, remoting.Success); err != nil {
		return nil, fmt.Errorf("rmq: route of topic %q: %w", topic, err)
	}
	var r topicRoute
	if err := json.Unmarshal(remoting.QuoteIntKeys(resp.Body), &r); err != nil {
		return nil, fmt.Errorf("rmq: route of topic %q from %s: %w", topic, addr, err)
	}
	return &r, nil
}

// CheckTopic returns nil when the name servers route topic to at least one broker with readable
// queues. Otherwise the error wraps ErrTopicNotFound (and says how to create the topic) or
// ErrNameServerUnreachable.
func (a *Admin) CheckTopic(ctx context.Context, topic string) error {
	r, err := a.route(ctx, topic)
	if errors.Is(err, ErrTopicNotFound) {
		return fmt.Errorf("%w; create it with `txconsume topic create -namesrv %s -topic %s` (or rmq.Admin.CreateTopic) before starting consumers",
			err, strings.Join(a.nameServers, ";"), topic)
	}
	if err != nil {
		return err
	}
	for _, q := range r.QueueDatas {
		if q.ReadQueueNums > 0 && q.Perm&permRead != 0 {
			return nil
		}
	}
	return fmt.Errorf("%w: topic %q has no readable queue on any broker", ErrTopicNotFound, topic)
}

// Topic permissions (PermName in the Java code base).
const (
	permRead  = 4
	permWrite = 2
)

// TopicConfig describes a topic for CreateTopic.
type TopicConfig struct {
	// Topic is the name. Required.
	Topic string
	// Cluster is the broker cluster to create it on, on the master of every broker of the
	// cluster. Default: DefaultCluster.
	Cluster string
	// Queues is the number of read and write queues on each broker. Default: DefaultTopicQueues.
	Queues int
	// Orderly marks the topic as ordered (messages of one sharding key go to one queue and an
	// orderly consumer reads each queue in order). Default: false.
	Orderly bool
	// RetryGroup, when set, also creates RetryTopic(RetryGroup) with one queue, as the broker does
	// on the group's first failed delivery. A running consumer learns new routes only every 30s,
	// so creating it with the topic makes the first redeliveries of a new group come on time.
	RetryGroup string
}

// CreateTopic creates (or updates: the call is idempotent) the topic on the master of every
// broker of the cluster, then waits until the name servers route it with the queues asked for,
// so that producers and consumers started next find it. The brokers are found through the
// name servers' cluster table.
func (a *Admin) CreateTopic(ctx context.Context, cfg TopicConfig) error {
	if cfg.Topic == "" {
		return errors.New("rmq: CreateTopic: empty topic name")
	}
	if cfg.Cluster == "" {
		cfg.Cluster = DefaultCluster
	}
	if cfg.Queues == 0 {
		cfg.Queues = DefaultTopicQueues
	}
	if cfg.Queues < 1 || cfg.Queues > 1024 {
		return fmt.Errorf("rmq: CreateTopic: %d queues out of range [1, 1024]", cfg.Queues)
	}
	brokers, err := a.clusterMasters(ctx, cfg.Cluster)
	if err != nil {
		return err
	}
	topics := []struct {
		name   string
		queues int
		order  bool
	}{{cfg.Topic, cfg.Queues, cfg.Orderly}}
	if cfg.RetryGroup != "" {
		topics = append(topics, struct {
			name   string
			queues int
			order  bool
		}{RetryTopic(cfg.RetryGroup), 1, false})
	}
	for _, t := range topics {
		for _, b := range brokers {
			ext := map[string]string{
				"topic":           t.name,
				"defaultTopic":    "TBW102",
				"readQueueNums":   strconv.Itoa(t.queues),
				"writeQueueNums":  strconv.Itoa(t.queues),
				"perm":            strconv.Itoa(permRead | permWrite),
				"topicFilterType": "SINGLE_TAG",
				"topicSysFlag":    "0",
				"order":           strconv.FormatBool(t.order),
			}
			resp, err := a.client.Invoke(ctx, b, remoting.CodeUpdateAndCreateTopic, ext, nil)
			if err != nil {
				return fmt.Errorf("rmq: create topic %q on broker %s: %w", t.name, b, err)
			}
			if err := remoting.Expect(b, resp, remoting.Success); err != nil {
				return fmt.Errorf("rmq: create topic %q: %w", t.name, err)
			}
		}
		if err := a.waitForRoute(ctx, t.name, t.queues*len(brokers)); err != nil {
			return err
		}
	}
	return nil
}

// waitForRoute polls the name servers until topic is routed with at least queues write queues.
func (a *Admin) waitForRoute(ctx context.Context, topic string, queues int) error {
	// Brokers register a new topic with the name servers at once (and again every 30s).
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		r, err := a.route(ctx, topic)
		if err == nil {
			n := 0
			for _, q := range r.QueueDatas {
				n += q.WriteQueueNums
			}
			if n >= queues {
				return nil
			}
		} else if !errors.Is(err, ErrTopicNotFound) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rmq: topic %q created but not routed by the name servers yet: %w", topic, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// clusterInfo is a name server's table of brokers.
type clusterInfo struct {
	BrokerAddrTable  map[string]brokerData `json:"brokerAddrTable"`
	ClusterAddrTable map[string][]string   `json:"clusterAddrTable"`
}

// clusterMasters returns the addresses of the master brokers of cluster, sorted.
func (a *Admin) clusterMasters(ctx context.Context, cluster string) ([]string, error) {
	resp, addr, err := a.askNameServers(ctx, remoting.CodeGetBrokerClusterInfo, nil)
	if err != nil {
		return nil, err
	}
	if err := remoting.Expect(addr, resp, remoting.Success); err != nil {
		return nil, fmt.Errorf("rmq: cluster info: %w", err)
	}
	var info clusterInfo
	if err := json.Unmarshal(remoting.QuoteIntKeys(resp.Body), &info); err != nil {
		return nil, fmt.Errorf("rmq: cluster info from %s: %w", addr, err)
	}
	var masters []string
	for _, name := range info.ClusterAddrTable[cluster] {
		if m := info.BrokerAddrTable[name].master(); m != "" {
			masters = append(masters, m)
		}
	}
	if len(masters) == 0 {
		known := make([]string, 0, len(info.ClusterAddrTable))
		for c := range info.ClusterAddrTable {
			known = append(known, c)
		}
		sort.Strings(known)
		return nil, fmt.Errorf("%w: name server %s knows no master broker of cluster %q (clusters: %s)",
			ErrClusterNotFound, addr, cluster, strings.Join(known, ", "))
	}
	sort.Strings(masters)
	return masters, nil
}
