package oteltxconsume_test

import (
	"context"
	"log"

	"github.com/jmoiron/sqlx"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/oteltxconsume"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// Instrumenting a processor: the SDK and its exporters are the application's choice; the
// instrumentation uses the global providers unless given others.
func Example() {
	otel.SetMeterProvider(sdkmetric.NewMeterProvider( /* sdkmetric.WithReader(a Prometheus or OTLP exporter) */ ))

	inst, err := oteltxconsume.New()
	if err != nil {
		log.Fatal(err)
	}
	var db *sqlx.DB // opened by the application
	p, err := txconsume.New(db, "billing", func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		// ctx carries the span "process <topic>": database instrumentation nests under it.
		_, err := tx.ExecContext(ctx, `UPDATE accounts SET balance = balance + 1 WHERE id = ?`, m.Keys[0])
		return err
	}, txconsume.WithHooks(inst.Hooks()))
	if err != nil {
		log.Fatal(err)
	}
	_, _ = rmq.NewConsumer(p, rmq.WithNameServers("rocketmq-namesrv:9876"), rmq.WithSubscription("payments", "*"))
}
