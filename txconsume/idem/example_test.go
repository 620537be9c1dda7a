package idem_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql" // registers the "mysql" driver
	"github.com/redis/go-redis/v9"

	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// A consumer that sends an e-mail per message, at most once per message id unless it crashes
// between sending and recording, deduplicated in Redis and fed by RocketMQ.
func Example() {
	if err := runMailSender(); err != nil {
		log.Fatal(err)
	}
}

func runMailSender() error {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()

	send := func(ctx context.Context, msg *txconsume.Message) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://mail.example.com/send",
			strings.NewReader(string(msg.Body)))
		if err != nil {
			return txconsume.Discard(err) // a message that can never be sent: do not retry it
		}
		// The receiver deduplicates on this key: the one gap the status mode leaves open (a
		// crash after sending, before recording) is closed there.
		req.Header.Set("Idempotency-Key", msg.ID)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err // redelivered later; the record is released
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("mail service: %s", resp.Status)
		}
		return nil
	}

	p, err := idem.New(idem.NewRedisStore(client, "mail:"), "mail-sender", send,
		idem.WithProcessingTTL(30*time.Second), // the HTTP call gets at most 24s
		idem.WithRetention(72*time.Hour),
	)
	if err != nil {
		return err
	}
	c, err := rmq.NewConsumer(p,
		rmq.WithNameServers("127.0.0.1:9876"), // the group is the Processor's: "mail-sender"
		rmq.WithSubscription("user-registered", "*"),
	)
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	// ... run until the service is told to stop, then drain in-flight messages:
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Shutdown(ctx)
}

// The MySQL store keeps records in txconsume_idem, created by migrations.Up. Expired records are
// treated as absent; a periodic Cleanup deletes them.
func ExampleNewMySQLStore() {
	ctx := context.Background()
	db, err := sql.Open("mysql", "app:secret@tcp(127.0.0.1:3306)/app")
	if err != nil {
		log.Fatal(err)
	}
	if err := migrations.Up(ctx, db); err != nil {
		log.Fatal(err)
	}
	store := idem.NewMySQLStore(db)

	p, err := idem.New(store, "webhook-forwarder", func(ctx context.Context, msg *txconsume.Message) error {
		return nil // call the webhook here
	}, idem.WithKeyFunc(txconsume.KeyByFirstKey))
	if err != nil {
		log.Fatal(err)
	}
	_ = p // rmq.NewConsumer(p, ...)

	go func() {
		for range time.Tick(10 * time.Minute) {
			if n, err := store.Cleanup(ctx, 0); err != nil {
				log.Printf("idem cleanup: %v", err)
			} else if n > 0 {
				log.Printf("idem cleanup: deleted %d expired records", n)
			}
		}
	}()
}

// A duplicate that arrives while the first delivery is still being handled comes back as an
// error the transport retries later; it is not run concurrently.
func ExampleProcessor_Process() {
	var p *idem.Processor // from idem.New
	ctx := context.Background()
	msg := &txconsume.Message{ID: "7F000001...", Topic: "user-registered", Body: []byte(`{"user":42}`)}

	res, err := p.Process(ctx, msg)
	switch {
	case errors.Is(err, idem.ErrInProgress):
		delay, _ := txconsume.RetryDelay(err)
		log.Printf("being processed elsewhere; retry in %v", delay)
	case err != nil:
		log.Printf("failed, will be redelivered: %v", err)
	default:
		log.Printf("result: %v", res) // applied, duplicate or discarded
	}
}
