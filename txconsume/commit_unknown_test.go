package txconsume_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume"
)

// TestCommitOutcomeUnknown drops the connection right after the client has sent COMMIT: the
// server commits, the client never hears so. The library must say that it cannot know (not
// "failed", not "nothing was committed"), and the redelivery must settle it.
func TestCommitOutcomeUnknown(t *testing.T) {
	ctx := context.Background()
	for _, pool := range poolKinds {
		t.Run(pool.name, func(t *testing.T) { testCommitOutcomeUnknown(ctx, t, pool.guarded) })
	}
}

func testCommitOutcomeUnknown(ctx context.Context, t *testing.T, guarded bool) {
	A, D := txconsume.Applied, txconsume.Duplicate
	// setup returns the fixture, a proxy in front of its server and a pool that goes through it.
	setup := func(t *testing.T) (*fixture, *testenv.Proxy, *sqlx.DB) {
		f := newFixture(t)
		cfg, err := mysql.ParseDSN(f.dsn)
		require.NoError(t, err)
		proxy := testenv.StartProxy(t, cfg.Addr)
		cfg.Addr = proxy.Addr()
		proxied := &fixture{t: t, dsn: cfg.FormatDSN()}
		if guarded {
			return f, proxy, proxied.guardedPool("")
		}
		return f, proxy, proxied.pool("")
	}
	fired := func(t *testing.T, tr *testenv.Trigger) {
		t.Helper()
		select {
		case <-tr.Fired():
		case <-time.After(time.Minute):
			t.Fatal("the proxy never saw COMMIT")
		}
	}

	t.Run("Process: the commit happened and the redelivery is a Duplicate", func(t *testing.T) {
		f, proxy, db := setup(t)
		h := count(recordEffect)
		log := newResultLog()
		p := f.processor(db, "g", h.handle, txconsume.WithHooks(txconsume.Hooks{OnResult: log.onResult}))
		tr := proxy.CutAfterClientSends(testenv.MySQLCommitPacket)
		r, err := p.Process(ctx, msg("m"))
		fired(t, tr)
		require.ErrorIs(t, err, txconsume.ErrCommitUnknown)
		require.Zero(t, r)
		require.Equal(t, []txconsume.Result{0}, log.seen["m"])
		require.ErrorIs(t, log.errs["m"][0], txconsume.ErrCommitUnknown)

		r, err = p.Process(ctx, msg("m"))
		require.NoError(t, err)
		require.Equal(t, D, r)
		require.Equal(t, 1, h.n("m"))
		require.Equal(t, 1, f.effects("m"))
		require.Equal(t, txconsume.OutcomeApplied, f.outcome("g", "m"))
	})

	t.Run("Process: a COMMIT that never arrived is unknown too, and the redelivery applies", func(t *testing.T) {
		f, proxy, db := setup(t)
		h := count(recordEffect)
		p := f.processor(db, "g", h.handle)
		tr := proxy.CutBeforeClientSends(testenv.MySQLCommitPacket)
		_, err := p.Process(ctx, msg("m"))
		fired(t, tr)
		require.ErrorIs(t, err, txconsume.ErrCommitUnknown, "the client cannot tell this case from the other")

		r, err := p.Process(ctx, msg("m"))
		require.NoError(t, err)
		require.Equal(t, A, r)
		require.Equal(t, 2, h.n("m"))
		require.Equal(t, 1, f.effects("m"))
	})

	t.Run("ProcessBatch: the commit happened and the redelivered batch is all Duplicates", func(t *testing.T) {
		f, proxy, db := setup(t)
		h := count(recordEffect)
		log := newResultLog()
		p := f.processor(db, "g", h.handle, txconsume.WithHooks(txconsume.Hooks{OnResult: log.onResult}))
		tr := proxy.CutAfterClientSends(testenv.MySQLCommitPacket)
		rs, err := p.ProcessBatch(ctx, msgs("a", "b"))
		fired(t, tr)
		require.ErrorIs(t, err, txconsume.ErrCommitUnknown)
		require.Nil(t, rs)
		for _, id := range []string{"a", "b"} {
			require.ErrorIs(t, log.errs[id][0], txconsume.ErrCommitUnknown, id)
		}

		rs, err = p.ProcessBatch(ctx, msgs("a", "b"))
		require.NoError(t, err)
		require.Equal(t, []txconsume.Result{D, D}, rs)
		require.Equal(t, 1, f.effects("a"))
		require.Equal(t, 1, f.effects("b"))
	})

	t.Run("a server that refuses the connection outright is not an unknown commit", func(t *testing.T) {
		f, proxy, db := setup(t)
		p := f.processor(db, "g", recordEffect)
		proxy.Close()
		_, err := p.Process(ctx, msg("m"))
		require.Error(t, err)
		require.NotErrorIs(t, err, txconsume.ErrCommitUnknown)
	})
}
