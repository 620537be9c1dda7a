package outbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jmoiron/sqlx"
)

// ErrServerTooOld is returned by Relay.Run on a database server older than MySQL 8.0.13 or
// MariaDB 10.6. The relays share the work with SELECT ... FOR UPDATE SKIP LOCKED (MySQL 8.0.1,
// MariaDB 10.6), the cleanup finds rows by primary key through JSON_TABLE (MySQL 8.0.4), and the
// schema uses expressions as column defaults (MySQL 8.0.13): the oldest MySQL that has all three.
var ErrServerTooOld = errors.New("outbox: the relay needs MySQL 8.0.13+ or MariaDB 10.6+ (SELECT ... FOR UPDATE SKIP LOCKED, JSON_TABLE)")

// checkServer fails with ErrServerTooOld unless the server has what the relay uses.
func checkServer(ctx context.Context, db *sqlx.DB) (string, error) {
	var version string
	if err := db.GetContext(ctx, &version, "SELECT VERSION()"); err != nil {
		return "", fmt.Errorf("outbox: server version: %w", err)
	}
	if err := skipLockedSupported(version); err != nil {
		return version, err
	}
	return version, nil
}

// skipLockedSupported parses a VERSION() string such as "8.4.3", "9.7.4-2" or
// "10.11.19-MariaDB-0+deb12u1".
func skipLockedSupported(version string) error {
	mariadb := strings.Contains(strings.ToLower(version), "mariadb")
	head, _, _ := strings.Cut(version, "-")
	nums := strings.SplitN(head, ".", 3)
	part := func(i int) int {
		if i >= len(nums) {
			return 0
		}
		n, _ := strconv.Atoi(nums[i])
		return n
	}
	major, minor, patch := part(0), part(1), part(2)
	ok := false
	if mariadb {
		ok = major > 10 || (major == 10 && minor >= 6)
	} else {
		ok = major > 8 || (major == 8 && (minor > 0 || patch >= 13))
	}
	if !ok {
		return fmt.Errorf("%w; this server is %s", ErrServerTooOld, version)
	}
	return nil
}
