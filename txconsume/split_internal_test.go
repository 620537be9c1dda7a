package txconsume

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPartSizer(t *testing.T) {
	t.Run("no limit until a conflict", func(t *testing.T) {
		var s partSizer
		s.committed(32)
		require.Zero(t, s.size())
	})
	t.Run("a conflict halves the part that lost, never below one", func(t *testing.T) {
		var s partSizer
		s.conflicted(16)
		require.Equal(t, 8, s.size())
		s.conflicted(16) // a larger part that started before the limit fell does not raise it
		require.Equal(t, 8, s.size())
		s.conflicted(8)
		s.conflicted(4)
		s.conflicted(2)
		s.conflicted(1)
		require.Equal(t, 1, s.size())
	})
	t.Run("commits at the limit raise it by one per growthRounds limits' worth of messages", func(t *testing.T) {
		var s partSizer
		s.conflicted(8)
		require.Equal(t, 4, s.size())
		s.committed(2) // smaller than the limit: says nothing about the limit
		require.Equal(t, 4, s.size())
		for range growthRounds - 1 {
			s.committed(4)
		}
		require.Equal(t, 4, s.size())
		s.committed(4)
		require.Equal(t, 5, s.size())
		s.conflicted(5)
		require.Equal(t, 2, s.size(), "a conflict also forfeits the credit")
		s.committed(2)
		require.Equal(t, 2, s.size())
	})
	t.Run("past the largest limit it is lifted", func(t *testing.T) {
		s := partSizer{limit: maxPartLimit}
		for range growthRounds {
			s.committed(maxPartLimit)
		}
		require.Zero(t, s.size())
	})
}

func TestChunk(t *testing.T) {
	require.Equal(t, [][]int{{1, 2, 3}}, chunk([]int{1, 2, 3}, 0))
	require.Equal(t, [][]int{{1, 2}, {3}}, chunk([]int{1, 2, 3}, 2))
	require.Equal(t, [][]int{{1, 2, 3}}, chunk([]int{1, 2, 3}, 5))
}
