package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/examples/order-service/internal/demo"
	"github.com/txconsume/txconsume/examples/order-service/order"
	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// TestMetricsEndpoint runs the order service, sends it a known mix of deliveries (payments,
// re-sends of the same message, payments of unknown orders, and a payment whose order row the
// test holds locked so its deliveries fail until released), then scrapes /metrics and compares
// the counts by outcome with what it sent.
func TestMetricsEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs MySQL and RocketMQ")
	}
	ctx := context.Background()
	dsn := testenv.MySQLDSN(t)
	db := testenv.OpenMySQL(t, dsn)
	require.NoError(t, migrations.Up(ctx, db.DB))
	require.NoError(t, order.Migrate(ctx, db.DB))
	const paid = 11 // ORD-01..ORD-11; ORD-11 is the one held locked
	var orders []order.Order
	for i := 1; i <= paid; i++ {
		orders = append(orders, order.Order{OrderNo: fmt.Sprintf("ORD-%02d", i), SKU: "SKU-A", Quantity: 1, AmountCents: 500})
	}
	require.NoError(t, order.CreateOrders(ctx, db, orders))
	require.NoError(t, order.SetStock(ctx, db, "SKU-A", 100))
	mq := testenv.NewRocketMQ(t)
	mq.CreateTopic(t, rmq.RetryTopic(mq.Group), 1) // so the first redelivery is not held up by a route refresh

	bin, err := demo.BuildService(ctx, t.TempDir())
	require.NoError(t, err)
	// A lock wait of 1s (instead of 50s) makes the locked order's deliveries fail quickly.
	svc := startService(t, bin, "-mysql-dsn", testenv.DSNWithParams(dsn, "innodb_lock_wait_timeout=1"), "-namesrv", mq.NameServer,
		"-topic", mq.Topic, "-group", mq.Group, "-consume-from", "first", "-metrics-addr", "127.0.0.1:0",
		"-log-format", "json")
	scrape := func() map[string]*dto.MetricFamily { return scrapeMetrics(t, "http://"+svc.metricsAddr+"/metrics") }
	consumed := func() map[string]float64 { return byOutcome(scrape()["messaging_client_consumed_messages_total"]) }
	waitFor := func(what string, cond func(map[string]float64) bool) {
		t.Helper()
		deadline := time.Now().Add(120 * time.Second)
		for {
			c := consumed()
			if cond(c) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; consumed messages by outcome: %v\nservice log:\n%s", what, c, svc.log())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	resp, err := http.Get("http://" + svc.metricsAddr + "/readyz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "the consumer's Check passes")

	prod := mq.StartProducer(t)
	send := func(m *primitive.Message) {
		t.Helper()
		res, err := prod.SendSync(ctx, m)
		require.NoError(t, err)
		require.Equal(t, primitive.SendOK, res.Status)
	}
	payment := func(orderNo string) *primitive.Message {
		m, err := order.NewPaidMessage(mq.Topic, order.PaidEvent{OrderNo: orderNo, PaymentID: "PAY-" + orderNo,
			AmountCents: 500, PaidAt: time.Now()})
		require.NoError(t, err)
		return m
	}

	// 10 payments, applied.
	var sent []*primitive.Message
	for i := 1; i < paid; i++ {
		m := payment(fmt.Sprintf("ORD-%02d", i))
		send(m)
		sent = append(sent, m)
	}
	waitFor("10 applied", func(c map[string]float64) bool { return c["applied"] == paid-1 })
	// 4 re-sends of the same messages (same UNIQ_KEY, as a producer retry sends them): duplicates.
	for _, m := range sent[:4] {
		again := primitive.NewMessage(m.Topic, m.Body)
		again.WithProperties(m.GetProperties())
		send(again)
	}
	// 2 payments of orders that do not exist: discarded.
	send(payment("ORD-X1"))
	send(payment("ORD-X2"))
	waitFor("4 duplicates and 2 discards", func(c map[string]float64) bool { return c["duplicate"] == 4 && c["discarded"] == 2 })

	// ORD-11's row is locked by another transaction: its deliveries fail until the lock goes.
	lock, err := db.BeginTxx(ctx, nil)
	require.NoError(t, err)
	_, err = lock.ExecContext(ctx, "SELECT order_no FROM orders WHERE order_no = 'ORD-11' FOR UPDATE")
	require.NoError(t, err)
	send(payment("ORD-11"))
	waitFor("a failed delivery", func(c map[string]float64) bool { return c["failed"] >= 1 })
	require.NoError(t, lock.Rollback())
	waitFor("ORD-11 applied", func(c map[string]float64) bool { return c["applied"] == paid })

	families := scrape()
	if r, err := http.Get("http://" + svc.metricsAddr + "/metrics"); err == nil {
		b, _ := io.ReadAll(r.Body)
		_ = r.Body.Close()
		t.Log(string(b))
	}
	final := byOutcome(families["messaging_client_consumed_messages_total"])
	failed := final["failed"]
	require.GreaterOrEqual(t, failed, 1.0)
	require.Equal(t, map[string]float64{"applied": paid, "duplicate": 4, "discarded": 2, "failed": failed}, final,
		"every delivery counted once under its outcome; no discard counted as a failure, nothing dead-lettered")
	require.Equal(t, final, histogramCounts(families["messaging_process_duration_seconds"]), "one duration per delivery")
	require.Equal(t, map[string]float64{"applied": paid, "duplicate": 4, "discarded": 2},
		histogramCounts(families["txconsume_message_time_in_queue_seconds"]))
	require.GreaterOrEqual(t, sum(families["txconsume_transaction_retries_total"]), 1.0, "the lock wait timeouts were retried")
	require.Equal(t, 0.0, sum(families["txconsume_process_in_flight"]))
	for _, name := range []string{"messaging_client_consumed_messages_total", "messaging_process_duration_seconds"} {
		for _, m := range families[name].GetMetric() {
			labels := labelMap(m)
			require.Equal(t, "rocketmq", labels["messaging_system"], name)
			require.Equal(t, mq.Topic, labels["messaging_destination_name"], name)
			require.Equal(t, mq.Group, labels["messaging_consumer_group_name"], name)
			require.Equal(t, "process", labels["messaging_operation_name"], name)
		}
	}

	var paidRows int
	require.NoError(t, db.GetContext(ctx, &paidRows, "SELECT COUNT(*) FROM payments_ledger"))
	require.Equal(t, paid, paidRows, "the database agrees: every order paid once")
	svc.stop(t)
}

type runningService struct {
	cmd         *exec.Cmd
	metricsAddr string
	mu          sync.Mutex
	lines       []string
	exited      chan error
}

func (s *runningService) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// startService starts the service and waits until it serves metrics.
func startService(t *testing.T, bin string, args ...string) *runningService {
	t.Helper()
	s := &runningService{cmd: exec.Command(bin, args...), exited: make(chan error, 1)}
	out, err := s.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, s.cmd.Start())
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			s.mu.Unlock()
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "serving metrics" {
				addr <- rec.Addr
			}
		}
		_, _ = io.Copy(io.Discard, out)
		s.exited <- s.cmd.Wait()
	}()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
	select {
	case s.metricsAddr = <-addr:
	case err := <-s.exited:
		t.Fatalf("the service exited (%v) before serving metrics:\n%s", err, s.log())
	case <-time.After(120 * time.Second):
		t.Fatalf("the service did not serve metrics in time:\n%s", s.log())
	}
	return s
}

// stop sends SIGTERM and expects a clean exit.
func (s *runningService) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-s.exited:
		require.NoError(t, err, s.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("the service did not stop:\n%s", s.log())
	}
}

func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return families
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// byOutcome sums a counter's series by txconsume_outcome.
func byOutcome(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		out[labelMap(m)["txconsume_outcome"]] += m.GetCounter().GetValue()
	}
	return out
}

// histogramCounts sums a histogram's sample counts by txconsume_outcome.
func histogramCounts(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		out[labelMap(m)["txconsume_outcome"]] += float64(m.GetHistogram().GetSampleCount())
	}
	return out
}

// sum adds up a counter's or gauge's series.
func sum(f *dto.MetricFamily) float64 {
	total := 0.0
	for _, m := range f.GetMetric() {
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return total
}
