package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
)

func TestSkipLockedSupported(t *testing.T) {
	for version, ok := range map[string]bool{
		"9.7.4-2":                    true,
		"8.4.3":                      true,
		"8.0.36-0ubuntu0.22.04.1":    true,
		"8.0.13":                     true,
		"8.0.12":                     false,
		"8.0.1":                      false,
		"8.0.0-dmr":                  false,
		"5.7.44-log":                 false,
		"10.11.19-MariaDB-0+deb12u1": true,
		"10.6.0-MariaDB":             true,
		"11.4.2-MariaDB":             true,
		"10.5.26-MariaDB-log":        false,
		"":                           false,
	} {
		err := skipLockedSupported(version)
		if ok {
			require.NoError(t, err, version)
			continue
		}
		require.ErrorIs(t, err, ErrServerTooOld, version)
		require.ErrorContains(t, err, "this server is "+version)
	}
}

func TestQueueSelector(t *testing.T) {
	queues := func(n int) []*primitive.MessageQueue {
		qs := make([]*primitive.MessageQueue, n)
		for i := range qs {
			qs[i] = &primitive.MessageQueue{Topic: "t", BrokerName: fmt.Sprintf("broker-%c", 'a'+i/4), QueueId: i % 4}
		}
		return qs
	}
	sel := QueueSelector()
	hash := producer.NewHashQueueSelector()

	t.Run("messages from elsewhere: the hash selector's queue, or the queue they name", func(t *testing.T) {
		mqs := queues(8)
		for i := range 50 {
			m := primitive.NewMessage("t", nil).WithShardingKey(fmt.Sprintf("order-%d", i))
			require.Same(t, hash.Select(m, mqs, ""), sel.Select(m, mqs, ""))
		}
		named := &primitive.MessageQueue{Topic: "t", BrokerName: "broker-b", QueueId: 3}
		m := primitive.NewMessage("t", nil)
		m.Queue = named
		require.Same(t, named, sel.Select(m, mqs, ""))
		require.Contains(t, mqs, sel.Select(primitive.NewMessage("t", nil), mqs, ""))
	})

	t.Run("a relay's keyed send goes to the key's queue, also before the queue count is known", func(t *testing.T) {
		mqs := queues(8)
		for i := range 50 {
			key := fmt.Sprintf("order-%d", i)
			want := hash.Select(primitive.NewMessage("t", nil).WithShardingKey(key), mqs, "")
			for _, plan := range []queuePlan{
				{keyed: true, hash: keyHash(key)},
				{keyed: true, queues: 8, index: int(keyHash(key) % 8)},
			} {
				p := &pick{queuePlan: plan}
				m := primitive.NewMessage("t", nil)
				m.Queue = p.register("t")
				require.Same(t, want, sel.Select(m, mqs, "broker-a"), "the same queue even right after its broker failed")
				unregister(m.Queue)
				seen, chosen, refused := p.result()
				require.Equal(t, 8, seen)
				require.Same(t, want, chosen)
				require.False(t, refused)
			}
		}
	})

	t.Run("a send grouped for another queue count is refused", func(t *testing.T) {
		p := &pick{queuePlan: queuePlan{keyed: true, queues: 4, index: 1}}
		m := primitive.NewMessage("t", nil)
		m.Queue = p.register("t")
		defer unregister(m.Queue)
		require.Nil(t, sel.Select(m, queues(8), ""))
		seen, _, refused := p.result()
		require.Equal(t, 8, seen)
		require.True(t, refused)
	})

	t.Run("a send without a key avoids the broker that just failed", func(t *testing.T) {
		for range 20 {
			p := &pick{}
			m := primitive.NewMessage("t", nil)
			m.Queue = p.register("t")
			q := sel.Select(m, queues(8), "broker-a")
			unregister(m.Queue)
			require.Equal(t, "broker-b", q.BrokerName)
		}
	})
}

func TestMarkSentChecksRowsAffected(t *testing.T) {
	ctx := context.Background()
	db, _ := migratedDB(t)
	ids := insertCommitted(t, db, "orders", 3)
	_, err := db.Exec("DELETE FROM "+Table+" WHERE id = ?", ids[1]) // changed by someone else
	require.NoError(t, err)
	r := &Relay{cfg: defaultRelayConfig()}
	tx, err := db.Beginx()
	require.NoError(t, err)
	defer tx.Rollback()
	err = r.markSent(ctx, tx, ids)
	require.ErrorContains(t, err, "recording 3 sent messages changed 2 rows")
}

func TestDeleteSentBatch(t *testing.T) {
	ctx := context.Background()
	db, _ := migratedDB(t)
	old := insertCommitted(t, db, "orders", 7)
	young := insertCommitted(t, db, "orders", 2)
	pending := insertCommitted(t, db, "orders", 1)
	in := func(ids []uint64) string { return fmt.Sprintf("id BETWEEN %d AND %d", ids[len(ids)-1], ids[0]) }
	_, err := db.Exec("UPDATE " + Table + " SET sent_at = UTC_TIMESTAMP(6) - INTERVAL 2 HOUR WHERE " + in(old))
	require.NoError(t, err)
	_, err = db.Exec("UPDATE " + Table + " SET sent_at = UTC_TIMESTAMP(6) - INTERVAL 59 MINUTE WHERE " + in(young))
	require.NoError(t, err)

	var batches []int64
	for {
		n, more, err := deleteSentBatch(ctx, db, time.Hour, 3)
		require.NoError(t, err)
		batches = append(batches, n)
		if !more {
			break
		}
	}
	require.Equal(t, []int64{3, 3, 1}, batches)
	var left []uint64
	require.NoError(t, db.Select(&left, "SELECT id FROM "+Table+" ORDER BY id DESC"))
	require.Equal(t, append(append([]uint64{}, pending...), young...), left, "young kept rows and pending rows stay")
}

// A topic whose backoff is over no longer shortens the relay's wait (which would make an idle
// relay spin), yet keeps its failure count for the next backoff.
func TestNextBackoffEnd(t *testing.T) {
	r := &Relay{cfg: defaultRelayConfig(), backoff: map[string]*topicBackoff{}}
	_, ok := r.nextBackoffEnd()
	require.False(t, ok)
	r.backoff["over"] = &topicBackoff{failures: 3, until: time.Now().Add(-time.Second)}
	_, ok = r.nextBackoffEnd()
	require.False(t, ok, "an expired backoff is no reason to wake up")
	r.backoff["later"] = &topicBackoff{failures: 1, until: time.Now().Add(time.Minute)}
	r.backoff["sooner"] = &topicBackoff{failures: 1, until: time.Now().Add(10 * time.Second)}
	d, ok := r.nextBackoffEnd()
	require.True(t, ok)
	require.InDelta(t, 10*time.Second, d, float64(time.Second))
	require.Equal(t, 3, r.backoff["over"].failures)
}

// After a wake-up the relay looks again after 1, 2, 4 ... 128 ms, then every 128 ms until a
// second has passed, then polls.
func TestNextHot(t *testing.T) {
	var waits []time.Duration
	elapsed := time.Duration(0)
	for d := hotFirst; d > 0; d = nextHot(d, elapsed) {
		waits = append(waits, d)
		elapsed += d
	}
	ms := time.Millisecond
	require.Equal(t, []time.Duration{1 * ms, 2 * ms, 4 * ms, 8 * ms, 16 * ms, 32 * ms, 64 * ms, 128 * ms}, waits[:8])
	for _, d := range waits[8:] {
		require.Equal(t, 128*ms, d)
	}
	require.GreaterOrEqual(t, elapsed, time.Second)
	require.Less(t, elapsed, time.Second+128*ms)
}

// The relay's read of the pending rows is served by the pending index alone, in id order
// without a sort, on MySQL and MariaDB.
func TestCandidatesQueryPlan(t *testing.T) {
	db, _ := migratedDB(t)
	insertCommitted(t, db, "orders", 50)
	_, err := db.Exec("ANALYZE TABLE " + Table)
	require.NoError(t, err)
	r := &Relay{cfg: defaultRelayConfig(), backoff: map[string]*topicBackoff{}}
	q, args := r.candidatesQuery(100)
	// FORMAT=TRADITIONAL: MySQL 9 may default to the TREE format (explain_format).
	rows, err := db.Queryx("EXPLAIN FORMAT=TRADITIONAL "+q, args...)
	require.NoError(t, err)
	defer rows.Close()
	require.True(t, rows.Next())
	plan := map[string]any{}
	require.NoError(t, rows.MapScan(plan))
	require.False(t, rows.Next(), "one table")
	require.NoError(t, rows.Err())
	str := func(k string) string { return fmt.Sprintf("%s", plan[k]) }
	require.Equal(t, "txconsume_outbox_pending", str("key"), "plan: %v", plan)
	require.Contains(t, strings.Split(str("Extra"), "; "), "Using index", "index only; plan: %v", plan)
	require.NotContains(t, str("Extra"), "filesort", "plan: %v", plan)
}

// The cleanup's DELETE finds each row by primary key, on a small table too, on MySQL and
// MariaDB: it never scans past rows that other transactions hold.
func TestDeleteRowsPlan(t *testing.T) {
	db, _ := migratedDB(t)
	ids := insertCommitted(t, db, "orders", 13)
	_, err := db.Exec("ANALYZE TABLE " + Table)
	require.NoError(t, err)
	list, err := json.Marshal(ids[3:9])
	require.NoError(t, err)
	plan := testenv.Explain(t, db.DB, deleteRowsSQL, string(list))
	testenv.RequirePrimaryKeyReads(t, plan, "o")
	for _, r := range plan {
		if r.Table == "o" {
			require.Equal(t, "eq_ref", r.Type, "plan: %+v", plan)
		}
	}
}
