// Command demo runs the order service end to end and proves exactly-once effects by counting them.
//
// It creates two topics (order-paid, order-shipped) and three databases (order_demo for the
// service, order_demo_naive for the naive consumer, order_demo_shipping for the shipping
// service), builds and starts cmd/order-service and cmd/shipping-service as child processes,
// publishes one order-paid event per order plus injected duplicates (re-sends with the same
// UNIQ_KEY and re-sends of the same order under a new message id), SIGKILLs the order service
// (and the outbox relay running in it) midway and starts it again, and SIGKILLs the shipping
// service midway too. It waits until every consumer has drained its topic, stops them with
// SIGTERM and checks the databases: every order paid once, stock taken once per order, one
// ledger row per order, one order-shipped event per order in the outbox, all relayed, and one
// shipment per order. It prints closing tables and exits with status 1 on any mismatch (2 if the
// run could not be carried out).
//
// Run it from the repository with services up:
//
//	eval "$(scripts/services.sh env)"
//	go run ./examples/order-service/cmd/demo
//
// Flags (environment variables in parentheses):
//
//	-mysql-dsn  (TXCONSUME_MYSQL_DSN)          a DSN of the server; the demo creates its own databases
//	-namesrv    (TXCONSUME_ROCKETMQ_NAMESRV)   RocketMQ name server, host:port
//	-broker     (TXCONSUME_ROCKETMQ_BROKER)    broker address for creating the topic; default: the
//	                                           name server's host, port 10911
//	-orders 2000, -same-id 0.15, -new-id 0.15, -kills 1, -shipping-kills 1, -naive=true,
//	-timeout 5m, -seed 1, -db order_demo, -keep-topic=false
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/apache/rocketmq-client-go/v2/admin"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/examples/order-service/internal/demo"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx)
	stop()
	os.Exit(code)
}

type options struct {
	dsn, namesrv, broker, dbName string
	naive, keepTopic             bool
	cfg                          demo.Config
}

func parseFlags() (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.StringVar(&o.dsn, "mysql-dsn", os.Getenv("TXCONSUME_MYSQL_DSN"), "MySQL DSN of the server (env TXCONSUME_MYSQL_DSN)")
	fs.StringVar(&o.namesrv, "namesrv", os.Getenv("TXCONSUME_ROCKETMQ_NAMESRV"), "RocketMQ name server (env TXCONSUME_ROCKETMQ_NAMESRV)")
	fs.StringVar(&o.broker, "broker", os.Getenv("TXCONSUME_ROCKETMQ_BROKER"), "broker address for topic creation (env TXCONSUME_ROCKETMQ_BROKER; default: name server host, port 10911)")
	fs.StringVar(&o.dbName, "db", "order_demo", "database of the service, recreated; the naive consumer uses <db>_naive, the shipping service <db>_shipping")
	fs.BoolVar(&o.naive, "naive", true, "also run the naive SELECT-then-apply consumer on the same traffic")
	fs.BoolVar(&o.keepTopic, "keep-topic", false, "keep the run's topics on the broker")
	fs.IntVar(&o.cfg.Orders, "orders", 2000, "orders, one payment event each")
	fs.Float64Var(&o.cfg.SameIDResends, "same-id", 0.15, "fraction of events re-sent with the same UNIQ_KEY")
	fs.Float64Var(&o.cfg.NewIDResends, "new-id", 0.15, "fraction of events re-sent under a new message id")
	fs.IntVar(&o.cfg.Kills, "kills", 1, "times the order service (and its relay) is SIGKILLed and restarted (0: none)")
	fs.IntVar(&o.cfg.ShippingKills, "shipping-kills", 1, "times the shipping service is SIGKILLed and restarted (0: none)")
	fs.DurationVar(&o.cfg.Timeout, "timeout", 5*time.Minute, "how long to wait for the consumers to drain")
	fs.Uint64Var(&o.cfg.Seed, "seed", 1, "seed for choosing the duplicated orders")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return nil, err
	}
	if o.dsn == "" || o.namesrv == "" {
		return nil, errors.New("set -mysql-dsn and -namesrv (or TXCONSUME_MYSQL_DSN and TXCONSUME_ROCKETMQ_NAMESRV: " +
			"eval \"$(scripts/services.sh env)\")")
	}
	if o.cfg.Kills == 0 {
		o.cfg.Kills = -1 // Config: 0 means the default (1)
	}
	if o.cfg.ShippingKills == 0 {
		o.cfg.ShippingKills = -1
	}
	if o.broker == "" {
		host, _, err := net.SplitHostPort(strings.Split(o.namesrv, ";")[0])
		if err != nil {
			return nil, fmt.Errorf("-namesrv %q: %w", o.namesrv, err)
		}
		o.broker = net.JoinHostPort(host, "10911")
	}
	return o, nil
}

func run(ctx context.Context) int {
	o, err := parseFlags()
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 2
	}
	rep, err := runDemo(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo:", err)
		return 2
	}
	rep.WriteSummary(os.Stdout)
	if len(rep.Failures()) > 0 {
		return 1
	}
	return 0
}

func runDemo(ctx context.Context, o *options) (*demo.Report, error) {
	// The client's own logging is off unless it reports an error.
	rmq.SetClientLogger(nil)
	stamp := time.Now().Format("20060102-150405")
	logDir, err := os.MkdirTemp("", "order-demo-"+stamp+"-")
	if err != nil {
		return nil, err
	}
	cfg := o.cfg
	fmt.Printf("building order-service and shipping-service into %s\n", logDir)
	if cfg.ServiceBin, err = demo.BuildService(ctx, logDir); err != nil {
		return nil, err
	}
	if cfg.ShippingBin, err = demo.BuildShippingService(ctx, logDir); err != nil {
		return nil, err
	}
	cfg.LogDir, cfg.NameServer = logDir, o.namesrv
	cfg.Progress, cfg.Live = os.Stdout, isTerminal(os.Stdout)
	cfg.Topic = "order-paid-" + stamp
	cfg.Group = "order-service-" + stamp
	cfg.ShippedTopic = "order-shipped-" + stamp
	cfg.ShippingGroup = "shipping-service-" + stamp
	if cfg.MySQLDSN, err = recreateDatabase(ctx, o.dsn, o.dbName); err != nil {
		return nil, err
	}
	if cfg.ShippingDSN, err = recreateDatabase(ctx, o.dsn, o.dbName+"_shipping"); err != nil {
		return nil, err
	}
	if o.naive {
		cfg.NaiveGroup = "order-naive-" + stamp
		if cfg.NaiveDSN, err = recreateDatabase(ctx, o.dsn, o.dbName+"_naive"); err != nil {
			return nil, err
		}
	}
	for _, topic := range []string{cfg.Topic, cfg.ShippedTopic} {
		fmt.Printf("creating topic %s on %s\n", topic, o.broker)
		if err := createTopic(ctx, o.namesrv, o.broker, topic, 4); err != nil {
			return nil, err
		}
		if !o.keepTopic {
			defer deleteTopic(o.namesrv, o.broker, topic)
		}
	}
	return demo.Run(ctx, cfg)
}

// recreateDatabase drops and creates database name on the server of dsn, and returns a DSN that
// selects it. The databases are left in place after the run so they can be inspected.
func recreateDatabase(ctx context.Context, dsn, name string) (string, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("parse MySQL DSN: %w", err)
	}
	db, err := sqlx.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return "", err
	}
	defer db.Close()
	for _, q := range []string{"DROP DATABASE IF EXISTS `" + name + "`", "CREATE DATABASE `" + name + "` CHARACTER SET utf8mb4"} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return "", fmt.Errorf("%s: %w", q, err)
		}
	}
	cfg.DBName = name
	return cfg.FormatDSN(), nil
}

// createTopic creates topic on broker and waits until the name server publishes its route, so
// that the services and the producer started next find it.
func createTopic(ctx context.Context, namesrv, broker, topic string, queues int) error {
	adm, err := admin.NewAdmin(admin.WithResolver(primitive.NewPassthroughResolver([]string{namesrv})))
	if err != nil {
		return fmt.Errorf("rocketmq admin: %w", err)
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := adm.CreateTopic(ctx, admin.WithTopicCreate(topic), admin.WithBrokerAddrCreate(broker),
		admin.WithReadQueueNums(queues), admin.WithWriteQueueNums(queues)); err != nil {
		return fmt.Errorf("create topic %s on %s: %w", topic, broker, err)
	}
	for {
		mqs, err := adm.FetchPublishMessageQueues(ctx, topic)
		if err == nil && len(mqs) == queues {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("%d queues published, want %d", len(mqs), queues)
			}
			return fmt.Errorf("topic %s has no route: %w", topic, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func deleteTopic(namesrv, broker, topic string) {
	adm, err := admin.NewAdmin(admin.WithResolver(primitive.NewPassthroughResolver([]string{namesrv})))
	if err != nil {
		return
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = adm.DeleteTopic(ctx, admin.WithTopicDelete(topic), admin.WithBrokerAddrDelete(broker),
		admin.WithNameSrvAddr([]string{namesrv}))
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
