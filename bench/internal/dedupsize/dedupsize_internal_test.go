package dedupsize

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCount(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1k", 250_000: "250k", 1_000_000: "1M",
		10_000_000: "10M", 1_500_000: "1500k", 1_000_001: "1000001"} {
		require.Equal(t, want, count(n), n)
	}
}

func TestUUIDLike(t *testing.T) {
	v4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		k := uuidLike()
		require.Regexp(t, v4, k)
		require.False(t, seen[k], "a repeated key: %s", k)
		seen[k] = true
	}
}
