package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/admin"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/rlog"
)

// RocketMQ describes the broker a test uses, with a topic and a consumer group of its own.
type RocketMQ struct {
	NameServer string // host:port of the namesrv
	Broker     string // host:port of the broker (where topics are created)
	Topic      string // unique to the test, already created with its route published
	Group      string // unique consumer group for the test
}

// DeadConsumerListed is how long the broker may go on listing a consumer client that is gone when
// it handled the client's last heartbeat only after it saw the client's connection close
// (docs/upstream.md, report 6): it expires the client 120s after that heartbeat, at its next 10s
// scan, and the live consumers rebalance within 20s. A killed client and one shut down cleanly are
// alike here: the Go client does not unregister, the broker learns of both from the closed
// connection. The queues allocated to the dead client wait that long, so a test that waits for a
// group to consume after one of its consumers left waits that much longer than it otherwise would.
const DeadConsumerListed = 150 * time.Second

var rocketBase struct {
	once            sync.Once
	namesrv, broker string
	err             error
}

func init() {
	// The client logs every rebalance at info level; tests only want its errors.
	rlog.SetLogLevel("error")
}

// RocketMQServer returns the namesrv and broker addresses the tests use.
func RocketMQServer(t testing.TB) (namesrv, broker string) {
	t.Helper()
	rocketBase.once.Do(func() {
		if ns := os.Getenv(EnvRocketMQNamesrv); ns != "" {
			rocketBase.namesrv = ns
			rocketBase.broker = os.Getenv(EnvRocketMQBroker)
			if rocketBase.broker == "" {
				// The broker in docker-compose.yml and scripts/services.sh listens on 10911
				// of the namesrv's host.
				host, _, err := net.SplitHostPort(strings.Split(ns, ";")[0])
				if err != nil {
					rocketBase.err = fmt.Errorf("%s=%q: %w", EnvRocketMQNamesrv, ns, err)
					return
				}
				rocketBase.broker = net.JoinHostPort(host, "10911")
			}
			return
		}
		rocketBase.namesrv, rocketBase.broker, rocketBase.err = startRocketMQContainers()
	})
	if rocketBase.err != nil {
		unavailable(t, "RocketMQ", rocketBase.err)
	}
	return rocketBase.namesrv, rocketBase.broker
}

// NewRocketMQ returns a unique topic (created, with 4 queues, route published) and group for this test.
func NewRocketMQ(t testing.TB) *RocketMQ {
	t.Helper()
	ns, broker := RocketMQServer(t)
	r := &RocketMQ{NameServer: ns, Broker: broker, Group: UniqueName(t, "g")}
	r.Topic = r.CreateTopic(t, UniqueName(t, "t"), 4)
	return r
}

// CreateTopic creates topic with queues read and write queues on the broker and waits until the
// namesrv publishes its route, so that producers and consumers started next find it.
func (r *RocketMQ) CreateTopic(t testing.TB, topic string, queues int) string {
	t.Helper()
	adm, err := admin.NewAdmin(admin.WithResolver(primitive.NewPassthroughResolver([]string{r.NameServer})))
	if err != nil {
		t.Fatalf("testenv: rocketmq admin: %v", err)
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The admin client gives each request a few seconds, whatever ctx allows: a broker busy
	// starting (or on a machine under heavy load) misses that, so the request is sent again
	// until ctx ends. Creating a topic that exists with the same queues changes nothing.
	for {
		err = adm.CreateTopic(ctx, admin.WithTopicCreate(topic), admin.WithBrokerAddrCreate(r.Broker),
			admin.WithReadQueueNums(queues), admin.WithWriteQueueNums(queues))
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			unavailable(t, "RocketMQ", fmt.Errorf("create topic %s on %s: %w", topic, r.Broker, err))
		case <-time.After(500 * time.Millisecond):
		}
	}
	for {
		mqs, err := adm.FetchPublishMessageQueues(ctx, topic)
		if err == nil && len(mqs) == queues {
			return topic
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testenv: topic %s has no route after 60s (last error: %v)", topic, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
