package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFlagLists(t *testing.T) {
	t.Run("lists drop blanks and spaces", func(t *testing.T) {
		require.Equal(t, []string{"broker", "dedup"}, splitList(" broker, ,dedup,"))
		require.Empty(t, splitList(""))
	})
	t.Run("numbers", func(t *testing.T) {
		ns, err := ints("0, 1000000,10000000")
		require.NoError(t, err)
		require.Equal(t, []int{0, 1_000_000, 10_000_000}, ns)
		ns, err = ints("")
		require.NoError(t, err)
		require.Empty(t, ns)
	})
	t.Run("a word where a number belongs is an error", func(t *testing.T) {
		_, err := ints("1,ten")
		require.ErrorContains(t, err, `"ten"`)
	})
}
