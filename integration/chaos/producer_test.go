package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/admin"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
)

// The producer of a scenario runs in a process of its own too: the RocketMQ client's producer has
// data races of its own on the paths a broker failure takes (its route clean-up writes a map that
// sends read), which would fail the test process under the race detector. The test binary started
// again with TXCONSUME_CHAOS_PRODUCER holding a producerSpec reads one JSON request per line on
// stdin and answers each with one JSON line on stdout.

const producerEnv = "TXCONSUME_CHAOS_PRODUCER"

type producerSpec struct {
	NameServer string
	Group      string
}

// producerRequest asks the producer process to send a message to a queue, or for a topic's queues.
type producerRequest struct {
	Op      string // "send" or "queues"
	Topic   string
	Body    []byte
	Props   map[string]string // with UNIQ_KEY for a message sent again
	Broker  string
	QueueID int
}

type producerReply struct {
	Key    string                   // send: the message's UNIQ_KEY
	Queues []primitive.MessageQueue // queues: sorted by broker and id
	Err    string
}

func runProducer(specJSON string) int {
	var spec producerSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "producer spec:", err)
		return 2
	}
	resolver := primitive.NewPassthroughResolver([]string{spec.NameServer})
	prod, err := rocketmq.NewProducer(
		producer.WithNsResolver(resolver),
		producer.WithGroupName(spec.Group),
		producer.WithQueueSelector(producer.NewManualQueueSelector()),
		producer.WithRetry(1),
		producer.WithSendMsgTimeout(3*time.Second),
	)
	if err == nil {
		err = prod.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "producer:", err)
		return 2
	}
	defer func() { _ = prod.Shutdown() }()

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 16<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req producerRequest
		var reply producerReply
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			reply.Err = err.Error()
		} else {
			reply = serve(prod, resolver, req)
		}
		if err := out.Encode(reply); err != nil {
			return 2
		}
	}
	return 0
}

func serve(prod rocketmq.Producer, resolver primitive.NsResolver, req producerRequest) producerReply {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch req.Op {
	case "send":
		m := primitive.NewMessage(req.Topic, req.Body)
		for k, v := range req.Props {
			m.WithProperty(k, v)
		}
		m.Queue = &primitive.MessageQueue{Topic: req.Topic, BrokerName: req.Broker, QueueId: req.QueueID}
		res, err := prod.SendSync(ctx, m)
		if err == nil && res.Status != primitive.SendOK {
			err = fmt.Errorf("send status %v", res.Status)
		}
		if err != nil {
			return producerReply{Err: err.Error()}
		}
		return producerReply{Key: m.GetProperty(primitive.PropertyUniqueClientMessageIdKeyIndex)}
	case "queues":
		// A new admin client each time: one keeps the first route it fetched of a topic, and the
		// route changes when a broker joins or leaves.
		adm, err := admin.NewAdmin(admin.WithResolver(resolver))
		if err != nil {
			return producerReply{Err: err.Error()}
		}
		defer adm.Close()
		qs, err := adm.FetchPublishMessageQueues(ctx, req.Topic)
		if err != nil {
			return producerReply{Err: err.Error()}
		}
		reply := producerReply{}
		for _, q := range qs {
			reply.Queues = append(reply.Queues, *q)
		}
		return reply
	}
	return producerReply{Err: "unknown op " + req.Op}
}

// producerProc is the parent's end of a producer process. Its methods may be called from many
// goroutines; the requests go one at a time.
type producerProc struct {
	cmd     *exec.Cmd
	stdin   *json.Encoder
	replies chan producerReply
	stderr  testenv.LockedBuffer
	mu      sync.Mutex
	exited  chan struct{}
}

var errProducerGone = errors.New("chaos: the producer process exited")

func startProducer(t *testing.T, spec producerSpec) *producerProc {
	t.Helper()
	b, err := json.Marshal(spec)
	require.NoError(t, err)
	p := &producerProc{replies: make(chan producerReply), exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), producerEnv+"="+string(b))
	stdin, err := p.cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	p.cmd.Stderr = &p.stderr
	require.NoError(t, p.cmd.Start())
	p.stdin = json.NewEncoder(stdin)
	go func() {
		defer close(p.exited)
		dec := json.NewDecoder(stdout)
		for {
			var r producerReply
			if dec.Decode(&r) != nil {
				_ = p.cmd.Wait()
				return
			}
			p.replies <- r
		}
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		module, _ := testenv.RaceReports(p.stderr.String())
		for _, report := range module {
			t.Errorf("chaos: producer process: data race in txconsume code:\n%s", report)
		}
	})
	return p
}

func (p *producerProc) call(req producerRequest) (producerReply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.stdin.Encode(req); err != nil {
		return producerReply{}, fmt.Errorf("%w: %w", errProducerGone, err)
	}
	select {
	case r := <-p.replies:
		if r.Err != "" {
			return r, errors.New(r.Err)
		}
		return r, nil
	case <-p.exited:
		return producerReply{}, fmt.Errorf("%w: %s", errProducerGone, p.stderr.Tail(4000))
	}
}

// send sends a message to queue q and returns its UNIQ_KEY (the one in props, when it has one).
func (p *producerProc) send(topic string, body []byte, props map[string]string, q *primitive.MessageQueue) (string, error) {
	r, err := p.call(producerRequest{Op: "send", Topic: topic, Body: body, Props: props, Broker: q.BrokerName, QueueID: q.QueueId})
	return r.Key, err
}

// queues returns the topic's write queues as the name server routes them now.
func (p *producerProc) queues(topic string) ([]*primitive.MessageQueue, error) {
	r, err := p.call(producerRequest{Op: "queues", Topic: topic})
	if err != nil {
		return nil, err
	}
	out := make([]*primitive.MessageQueue, len(r.Queues))
	for i := range r.Queues {
		out[i] = &r.Queues[i]
	}
	return out, nil
}
