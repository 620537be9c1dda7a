package service

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConfig(t *testing.T) {
	t.Run("addresses split on commas and semicolons", func(t *testing.T) {
		require.Equal(t, []string{"a:1", "b:2", "c:3"}, SplitAddrs(" a:1;b:2, c:3;"))
		require.Empty(t, SplitAddrs(""))
	})
	t.Run("defaults and required fields", func(t *testing.T) {
		c := Config{MySQLDSN: "dsn", NameServers: []string{"ns:9876"}}
		require.NoError(t, c.setDefaults())
		require.Equal(t, "order-paid", c.Topic)
		require.Equal(t, "order-service", c.Group)
		require.Equal(t, ModeTxconsume, c.Mode)
		require.Equal(t, 20, c.Goroutines)
		s := Config{MySQLDSN: "dsn", NameServers: []string{"ns:9876"}, Mode: ModeShipping}
		require.NoError(t, s.setDefaults())
		require.Equal(t, "order-shipped", s.Topic)
		require.Equal(t, "shipping-service", s.Group)
		for _, bad := range []Config{
			{NameServers: []string{"ns:9876"}},
			{MySQLDSN: "dsn"},
			{MySQLDSN: "dsn", NameServers: []string{"ns:9876"}, Mode: "fast"},
			{MySQLDSN: "dsn", NameServers: []string{"ns:9876"}, Goroutines: -1},
			{MySQLDSN: "dsn", NameServers: []string{"ns:9876"}, Mode: ModeNaive, ShippedTopic: "order-shipped"},
			{MySQLDSN: "dsn", NameServers: []string{"ns:9876"}, OutboxRetention: -1},
		} {
			require.Error(t, bad.setDefaults(), "%+v", bad)
		}
	})
}
