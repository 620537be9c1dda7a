package integration

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/outbox"
)

// An outbox relay runs in a child process too (the test binary started again with
// TXCONSUME_OUTBOX_RELAY holding a relaySpec): it can then be SIGKILLed like a real one, and its
// producer's client races stay out of the test process.

const relayWorkerEnv = "TXCONSUME_OUTBOX_RELAY"

// relaySpec says what one relay process runs.
type relaySpec struct {
	DSN, NameServer string
	Instance        string
	// KillAfterSends > 0: after that many sends the broker stored, the relay SIGKILLs itself in
	// its OnSend hook, which runs after SendSync returned and before the round deletes the rows:
	// the messages of that send are on the broker and still pending in the table.
	KillAfterSends int
	PollMillis     int
}

// runRelayWorker is the child's main. It prints "ready" once Run is called, "S <id> <id> ..." for
// every send the broker stored, "F <error>" for a failed send and "K" just before it kills
// itself; it stops the relay on "shutdown" or when stdin closes and prints "E stopped <error>".
func runRelayWorker(specJSON string) int {
	var spec relaySpec
	db, ok := childSetup(specJSON, &spec, func() string { return spec.DSN })
	if !ok {
		return 2
	}
	defer db.Close()
	out := &lineWriter{}
	opts := []producer.Option{
		producer.WithNsResolver(primitive.NewPassthroughResolver([]string{spec.NameServer})),
		producer.WithGroupName("outbox-relay"),
		producer.WithQueueSelector(outbox.QueueSelector()),
		producer.WithRetry(1),
		producer.WithSendMsgTimeout(2 * time.Second),
	}
	if spec.Instance != "" {
		opts = append(opts, producer.WithInstanceName(spec.Instance))
	}
	prod, err := rocketmq.NewProducer(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "new producer:", err)
		return 2
	}
	if err := prod.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "start producer:", err)
		return 2
	}
	defer func() { _ = prod.Shutdown() }()

	sends := 0
	onSend := func(_ context.Context, s outbox.Send) {
		if s.Err != nil {
			out.line("F " + strings.ReplaceAll(s.Err.Error(), "\n", " "))
			return
		}
		out.line("S " + strings.Join(s.IDs, " "))
		sends++
		if spec.KillAfterSends > 0 && sends >= spec.KillAfterSends {
			out.line("K")
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
	poll := outbox.DefaultPollInterval
	if spec.PollMillis > 0 {
		poll = time.Duration(spec.PollMillis) * time.Millisecond
	}
	relay, err := outbox.NewRelay(db, prod, outbox.WithPollInterval(poll),
		outbox.WithBackoff(50*time.Millisecond, time.Second),
		outbox.WithHooks(outbox.Hooks{OnSend: onSend}),
		outbox.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))))
	if err != nil {
		fmt.Fprintln(os.Stderr, "new relay:", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			if in.Text() == "shutdown" {
				break
			}
		}
		cancel()
	}()
	out.line("ready")
	err = relay.Run(ctx)
	out.line(fmt.Sprintf("E stopped %v", err))
	return 0
}

// forwardHandler is the consumer of topic A in the outbox chain: it applies its own effect (the
// ledger), takes the next sequence number of the message's order under the order's row lock, and
// enqueues the event for topic B in the same transaction, with the order as sharding key. The
// sequence numbers are therefore the order in which the order's B events were enqueued.
func forwardHandler(ledger txconsume.Handler, topic string) txconsume.Handler {
	return func(ctx context.Context, tx *sqlx.Tx, msg *txconsume.Message) error {
		if err := ledger(ctx, tx, msg); err != nil {
			return err
		}
		order := msg.Properties["order"]
		if _, err := tx.ExecContext(ctx, `INSERT INTO order_next (order_id, n) VALUES (?, 1)
			ON DUPLICATE KEY UPDATE n = n + 1`, order); err != nil {
			return err
		}
		var seq int
		if err := tx.GetContext(ctx, &seq, `SELECT n FROM order_next WHERE order_id = ?`, order); err != nil {
			return err
		}
		return outbox.Enqueue(ctx, tx, outbox.Message{
			Topic:       topic,
			Keys:        []string{"b-" + string(msg.Body)},
			ShardingKey: order,
			Body:        msg.Body,
			Properties:  map[string]string{"order": order, "seq": strconv.Itoa(seq), "a_id": msg.ID},
		})
	}
}
