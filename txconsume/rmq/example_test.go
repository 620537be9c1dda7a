package rmq_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// A service that credits a ledger once per order-paid event, and drains on SIGINT.
func Example() {
	db := sqlx.MustOpen("mysql", os.Getenv("MYSQL_DSN"))
	credit := func(ctx context.Context, tx *sqlx.Tx, msg *txconsume.Message) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO ledger (order_id, amount) VALUES (?, ?)`,
			msg.Keys[0], string(msg.Body))
		return err
	}
	p, err := txconsume.New(db, "billing", credit)
	if err != nil {
		log.Fatal(err)
	}
	c, err := rmq.NewConsumer(p,
		rmq.WithNameServers("127.0.0.1:9876"), // the group is the Processor's: "billing"
		rmq.WithSubscription("orders", "paid"),
		rmq.WithRetryDelayLevel(2),
		rmq.WithMaxReconsumeTimes(8),
	)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(); err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	<-ctx.Done()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Shutdown(shutdownCtx); err != nil {
		log.Print(err)
	}
}

// Orderly consumption with a push consumer managed by the caller.
func ExampleOrderlyListener() {
	db := sqlx.MustOpen("mysql", os.Getenv("MYSQL_DSN"))
	p, err := txconsume.New(db, "shipping", func(ctx context.Context, tx *sqlx.Tx, msg *txconsume.Message) error {
		return nil // apply the order's next state
	})
	if err != nil {
		log.Fatal(err)
	}
	push, err := rocketmq.NewPushConsumer(
		consumer.WithNameServer(primitive.NamesrvAddr{"127.0.0.1:9876"}),
		consumer.WithGroupName("shipping"),
		consumer.WithConsumerOrder(true))
	if err != nil {
		log.Fatal(err)
	}
	err = push.Subscribe("orders", consumer.MessageSelector{},
		rmq.OrderlyListener(p, rmq.WithSuspendTime(500*time.Millisecond)))
	if err != nil {
		log.Fatal(err)
	}
}

func ExampleDelayLevel() {
	for _, d := range []time.Duration{time.Second, 20 * time.Second, 45 * time.Minute} {
		fmt.Println(d, "->", rmq.DelayLevel(d))
	}
	// Output:
	// 1s -> 1
	// 20s -> 4
	// 45m0s -> 17
}
