package txconsume_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

// These tests need no database and run with -short.

func TestStoredKey(t *testing.T) {
	t.Run("short keys are stored as they are", func(t *testing.T) {
		for _, k := range []string{"a", "Order-1", "order-1 ", strings.Repeat("x", txconsume.MaxStoredKeyLen)} {
			require.Equal(t, k, txconsume.StoredKey(k))
		}
	})
	t.Run("long keys are hashed deterministically and distinctly", func(t *testing.T) {
		a := strings.Repeat("x", txconsume.MaxStoredKeyLen+1)
		b := strings.Repeat("x", txconsume.MaxStoredKeyLen) + "y"
		require.Equal(t, txconsume.StoredKey(a), txconsume.StoredKey(a))
		require.NotEqual(t, txconsume.StoredKey(a), txconsume.StoredKey(b))
		require.True(t, strings.HasPrefix(txconsume.StoredKey(a), "#sha256:"))
		require.LessOrEqual(t, len(txconsume.StoredKey(a)), txconsume.MaxStoredKeyLen)
	})
	t.Run("a raw key shaped like a hash is hashed too", func(t *testing.T) {
		long := strings.Repeat("x", 1000)
		spoof := txconsume.StoredKey(long)
		require.NotEqual(t, spoof, txconsume.StoredKey(spoof))
		require.NotEqual(t, txconsume.StoredKey(long), txconsume.StoredKey(spoof))
	})
}

func TestKeyFuncs(t *testing.T) {
	m := &txconsume.Message{ID: "id", Keys: []string{"k1", "k2"}, Properties: map[string]string{"p": "v"}}
	for name, tc := range map[string]struct {
		f    txconsume.KeyFunc
		msg  *txconsume.Message
		want string
	}{
		"by id":              {txconsume.KeyByID, m, "id"},
		"by first key":       {txconsume.KeyByFirstKey, m, "k1"},
		"by property":        {txconsume.KeyByProperty("p"), m, "v"},
		"no id":              {txconsume.KeyByID, &txconsume.Message{}, ""},
		"no keys":            {txconsume.KeyByFirstKey, &txconsume.Message{ID: "id"}, ""},
		"empty first key":    {txconsume.KeyByFirstKey, &txconsume.Message{Keys: []string{"", "k2"}}, ""},
		"missing property":   {txconsume.KeyByProperty("q"), m, ""},
		"nil properties map": {txconsume.KeyByProperty("p"), &txconsume.Message{}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			k, err := tc.f(tc.msg)
			if tc.want == "" {
				require.ErrorIs(t, err, txconsume.ErrEmptyKey)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, k)
		})
	}
}

func TestControlErrors(t *testing.T) {
	cause := errors.New("cause")
	t.Run("discard", func(t *testing.T) {
		err := fmt.Errorf("wrapped: %w", txconsume.Discard(cause))
		require.True(t, txconsume.IsDiscard(err))
		require.ErrorIs(t, err, cause)
		require.False(t, txconsume.IsDiscard(cause))
		require.Equal(t, "txconsume: discarded", txconsume.Discard(nil).Error())
	})
	t.Run("retry after", func(t *testing.T) {
		err := fmt.Errorf("wrapped: %w", txconsume.RetryAfter(time.Minute, cause))
		d, ok := txconsume.RetryDelay(err)
		require.True(t, ok)
		require.Equal(t, time.Minute, d)
		require.ErrorIs(t, err, cause)
		_, ok = txconsume.RetryDelay(cause)
		require.False(t, ok)
	})
	t.Run("batch error", func(t *testing.T) {
		be := &txconsume.BatchError{Failures: []txconsume.BatchFailure{
			{Index: 1, MessageID: "a", Err: txconsume.RetryAfter(time.Second, cause)},
			{Index: 4, MessageID: "b", Err: txconsume.RetryAfter(time.Minute, nil)},
			{Index: 5, MessageID: "c", Err: &txconsume.PanicError{Value: cause}},
		}}
		err := fmt.Errorf("batch: %w", be)
		require.ErrorIs(t, err, cause)
		var pe *txconsume.PanicError
		require.ErrorAs(t, err, &pe)
		d, ok := txconsume.RetryDelay(err)
		require.True(t, ok)
		require.Equal(t, time.Minute, d, "the longest requested delay")
		require.Nil(t, be.Failed(0))
		require.NotNil(t, be.Failed(4))
		require.Contains(t, be.Error(), "3 message(s)")
	})
	t.Run("panic error", func(t *testing.T) {
		require.Nil(t, (&txconsume.PanicError{Value: "text"}).Unwrap())
		require.Contains(t, (&txconsume.PanicError{Value: "text"}).Error(), "text")
	})
}

func TestNewValidates(t *testing.T) {
	db := sqlx.NewDb(nil, "mysql") // never used: New does not touch the database
	h := func(context.Context, *sqlx.Tx, *txconsume.Message) error { return nil }
	for name, tc := range map[string]struct {
		db    *sqlx.DB
		group string
		h     txconsume.Handler
		opts  []txconsume.Option
	}{
		"nil db":         {nil, "g", h, nil},
		"nil handler":    {db, "g", nil, nil},
		"empty group":    {db, "", h, nil},
		"long group":     {db, strings.Repeat("g", 256), h, nil},
		"nil key func":   {db, "g", h, []txconsume.Option{txconsume.WithKeyFunc(nil)}},
		"negative retry": {db, "g", h, []txconsume.Option{txconsume.WithMaxRetries(-1)}},
		"bad backoff":    {db, "g", h, []txconsume.Option{txconsume.WithRetryBackoff(time.Second, time.Millisecond)}},
		"nil logger":     {db, "g", h, []txconsume.Option{txconsume.WithLogger(nil)}},
		// MySQL and MariaDB have no such levels: every Begin would fail, every message with it.
		"snapshot isolation":     {db, "g", h, []txconsume.Option{txconsume.WithIsolation(sql.LevelSnapshot)}},
		"linearizable isolation": {db, "g", h, []txconsume.Option{txconsume.WithIsolation(sql.LevelLinearizable)}},
		"write committed":        {db, "g", h, []txconsume.Option{txconsume.WithIsolation(sql.LevelWriteCommitted)}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := txconsume.New(tc.db, tc.group, tc.h, tc.opts...)
			require.Error(t, err)
		})
	}
	p, err := txconsume.New(db, "g", h)
	require.NoError(t, err)
	require.Equal(t, "g", p.Group())
	for _, level := range []sql.IsolationLevel{sql.LevelDefault, sql.LevelReadUncommitted,
		sql.LevelReadCommitted, sql.LevelRepeatableRead, sql.LevelSerializable} {
		_, err := txconsume.New(db, "g", h, txconsume.WithIsolation(level))
		require.NoError(t, err, level.String())
	}
}
