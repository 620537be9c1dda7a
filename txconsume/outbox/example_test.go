package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/outbox"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// A service that consumes order-paid, reserves stock and announces stock-reserved, exactly once
// from the message it consumes to the message it produces: the dedup claim, the stock update
// and the outbox row commit together, and the relay publishes the row with a stable id.
func Example() {
	db := sqlx.MustOpen("mysql", os.Getenv("MYSQL_DSN"))

	type orderPaid struct{ OrderNo, SKU string }
	reserve := func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		var ev orderPaid
		if err := json.Unmarshal(m.Body, &ev); err != nil {
			return txconsume.Discard(err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE stock SET reserved = reserved + 1 WHERE sku = ?", ev.SKU); err != nil {
			return err
		}
		return outbox.Enqueue(ctx, tx, outbox.Message{
			Topic:       "stock-reserved",
			Keys:        []string{ev.OrderNo},
			ShardingKey: ev.OrderNo, // the order's events reach the broker in order
			Body:        m.Body,
		})
	}
	p, err := txconsume.New(db, "stock", reserve)
	if err != nil {
		log.Fatal(err)
	}

	prod, err := rocketmq.NewProducer(
		producer.WithNsResolver(primitive.NewPassthroughResolver([]string{"127.0.0.1:9876"})),
		producer.WithGroupName("stock-outbox"),
		producer.WithQueueSelector(outbox.QueueSelector()),
	)
	if err != nil {
		log.Fatal(err)
	}
	relay, err := outbox.NewRelay(db, prod)
	if err != nil {
		log.Fatal(err)
	}
	c, err := rmq.NewConsumer(p, rmq.WithNameServers("127.0.0.1:9876"), rmq.WithGroup("stock"),
		rmq.WithSubscription("order-paid", "*"))
	if err != nil {
		log.Fatal(err)
	}
	if err := prod.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = prod.Shutdown() }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(ctx) }()
	if err := c.Start(); err != nil {
		log.Print(err)
		return
	}
	<-ctx.Done()
	_ = c.Shutdown(context.Background()) // in-flight handlers commit their outbox rows first
	if err := <-relayDone; err != nil {  // the relay finished its round
		log.Print(err)
	}
}

// Enqueue in a plain business transaction, here an HTTP handler's: the order row and its
// order-created message commit together.
func ExampleEnqueue() {
	var db *sqlx.DB // an open pool
	http.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		tx, err := db.BeginTxx(ctx, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer func() { _ = tx.Rollback() }()
		orderNo := r.FormValue("order")
		if _, err := tx.ExecContext(ctx, "INSERT INTO orders (order_no, status) VALUES (?, 'NEW')", orderNo); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		err = outbox.Enqueue(ctx, tx, outbox.Message{Topic: "order-created", Keys: []string{orderNo},
			ShardingKey: orderNo, Body: []byte(`{"order":"` + orderNo + `"}`)})
		if errors.Is(err, outbox.ErrInvalidMessage) {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err == nil {
			err = tx.Commit()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
}

// A bad message is refused by Enqueue, not left in the table for the relay to fail on.
func ExampleErrInvalidMessage() {
	var tx *sqlx.Tx // the business transaction
	err := outbox.Enqueue(context.Background(), tx,
		outbox.Message{Topic: "order-created", Body: []byte("ok")},
		outbox.Message{Topic: "order created", Body: []byte("a space in the topic")},
	)
	fmt.Println(errors.Is(err, outbox.ErrInvalidMessage))
	fmt.Println(err)
	// Output:
	// true
	// outbox: invalid message 1: topic "order created" has characters RocketMQ does not allow (only letters, digits, %, |, _ and -)
}

// The selector puts a relay's batches, and any message with a sharding key, on the queue
// producer.NewHashQueueSelector would choose, so producers with either selector agree.
func ExampleQueueSelector() {
	queues := make([]*primitive.MessageQueue, 8)
	for i := range queues {
		queues[i] = &primitive.MessageQueue{Topic: "orders", BrokerName: "broker-a", QueueId: i}
	}
	hash := producer.NewHashQueueSelector()
	for _, order := range []string{"order-1", "order-2", "order-3"} {
		m := primitive.NewMessage("orders", nil).WithShardingKey(order)
		fmt.Println(order, outbox.QueueSelector().Select(m, queues, "").QueueId == hash.Select(m, queues, "").QueueId)
	}
	// Output:
	// order-1 true
	// order-2 true
	// order-3 true
}

// Hooks feed metrics: sends and failures per topic, and the backlog and its age per topic.
func ExampleHooks() {
	var db *sqlx.DB            // an open pool
	var prod rocketmq.Producer // created with outbox.QueueSelector()
	sent, failed := map[string]int{}, map[string]int{}
	relay, err := outbox.NewRelay(db, prod, outbox.WithHooks(outbox.Hooks{
		OnSend: func(_ context.Context, s outbox.Send) {
			if s.Err != nil {
				failed[s.Topic] += len(s.IDs)
				return
			}
			sent[s.Topic] += len(s.IDs)
		},
		OnStatus: func(_ context.Context, status []outbox.TopicStatus) {
			for _, st := range status {
				log.Printf("outbox %s: %d pending, oldest %s", st.Topic, st.Pending, st.OldestPending)
			}
		},
	}))
	_, _ = relay, err
}
