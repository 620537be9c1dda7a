package txguard

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEndsTransaction(t *testing.T) {
	for q, want := range map[string]bool{
		"COMMIT":                              true,
		"  commit work":                       true,
		"\nROLLBACK":                          true,
		"rollback work":                       true,
		"ROLLBACK TO SAVEPOINT txconsume_msg": false,
		"ROLLBACK WORK TO SAVEPOINT s":        false,
		"rollback to s":                       false,
		"BEGIN":                               true,
		"START TRANSACTION READ ONLY":         true,
		"START SLAVE":                         false,
		"SAVEPOINT s":                         false,
		"RELEASE SAVEPOINT s":                 false,
		"INSERT INTO commit_log VALUES (1)":   false,
		"SELECT 'COMMIT'":                     false,
		"COMMITTED":                           false,
		"":                                    false,
	} {
		require.Equal(t, want, endsTransaction(q), "%q", q)
	}
}
