package idem_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
)

func TestNewValidates(t *testing.T) {
	store := idem.NewRedisStore(nil, "") // never called: New only checks its arguments
	h := func(context.Context, *txconsume.Message) error { return nil }

	_, err := idem.New(store, "group", h)
	require.NoError(t, err)

	for name, call := range map[string]func() error{
		"nil store":   func() error { _, err := idem.New(nil, "group", h); return err },
		"empty group": func() error { _, err := idem.New(store, "", h); return err },
		"nil handler": func() error { _, err := idem.New(store, "group", nil); return err },
		"tiny TTL": func() error {
			_, err := idem.New(store, "group", h, idem.WithProcessingTTL(time.Millisecond))
			return err
		},
		"zero retain":  func() error { _, err := idem.New(store, "group", h, idem.WithRetention(0)); return err },
		"nil key func": func() error { _, err := idem.New(store, "group", h, idem.WithKeyFunc(nil)); return err },
		"nil logger":   func() error { _, err := idem.New(store, "group", h, idem.WithLogger(nil)); return err },
		"bad policy":   func() error { _, err := idem.New(store, "group", h, idem.WithInProgressPolicy(7)); return err },
	} {
		t.Run(name, func(t *testing.T) { require.Error(t, call()) })
	}
}
