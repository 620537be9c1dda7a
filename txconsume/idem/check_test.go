package idem_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
)

// TestMySQLStoreWithoutSchema: a store on a database nobody migrated fails its check with what to
// run, and a delivery that reaches it anyway says the same instead of a bare 1146.
func TestMySQLStoreWithoutSchema(t *testing.T) {
	ctx := context.Background()
	db := testenv.MySQL(t)
	store := idem.NewMySQLStore(db.DB)
	p, err := idem.New(store, "mailer", func(context.Context, *txconsume.Message) error { return nil })
	require.NoError(t, err)

	err = p.Check(ctx)
	require.ErrorIs(t, err, migrations.ErrNotMigrated)
	require.ErrorContains(t, err, "group mailer")

	_, err = p.Process(ctx, &txconsume.Message{ID: "m", Topic: "t"})
	require.ErrorContains(t, err, "Error 1146")
	require.ErrorContains(t, err, "migrations.Up")

	require.NoError(t, migrations.Up(ctx, db.DB))
	require.NoError(t, p.Check(ctx))
	_, err = store.Acquire(ctx, idem.Key{Group: "g", Topic: "t", ID: "k"}, "o", time.Minute)
	require.NoError(t, err)
}
