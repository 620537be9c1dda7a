package pkdelete

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStatement(t *testing.T) {
	t.Run("keys travel as one JSON document of hex strings", func(t *testing.T) {
		q, args, err := Statement("t", []string{"a", "b"},
			[][][]byte{{[]byte("g"), []byte("k-1")}, {[]byte(""), {0xff, '"', '\\'}}}, "created_at < ?", "cutoff")
		require.NoError(t, err)
		require.Equal(t, "DELETE t FROM JSON_TABLE(?, '$[*]' COLUMNS ("+
			"pkdelete_0 VARCHAR(510) CHARACTER SET ascii PATH '$[0]', pkdelete_1 VARCHAR(510) CHARACTER SET ascii PATH '$[1]'"+
			")) AS pkdelete_keys STRAIGHT_JOIN t ON t.a = UNHEX(pkdelete_keys.pkdelete_0) AND t.b = UNHEX(pkdelete_keys.pkdelete_1) "+
			"WHERE created_at < ?", q)
		require.Equal(t, []any{`[["67","6b2d31"],["","ff225c"]]`, "cutoff"}, args)
	})

	t.Run("the statement text does not depend on the keys", func(t *testing.T) {
		q1, _, err := Statement("t", []string{"a"}, [][][]byte{{[]byte("x")}}, "")
		require.NoError(t, err)
		q2, _, err := Statement("t", []string{"a"}, [][][]byte{{[]byte("y")}, {[]byte("z")}}, "")
		require.NoError(t, err)
		require.Equal(t, q1, q2)
		require.NotContains(t, q1, "WHERE")
	})

	t.Run("bad keys are refused", func(t *testing.T) {
		_, _, err := Statement("t", []string{"a", "b"}, [][][]byte{{[]byte("only one part")}}, "")
		require.ErrorContains(t, err, "has 1 parts, want 2")
		_, _, err = Statement("t", []string{"a"}, [][][]byte{{[]byte(strings.Repeat("x", MaxKeyPartLen+1))}}, "")
		require.ErrorContains(t, err, "longer than 255")
		_, _, err = Statement("t", nil, nil, "")
		require.Error(t, err)
	})
}
