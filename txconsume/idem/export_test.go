package idem

import (
	"context"
	"errors"
)

// CleanupStatement returns the DELETE that Cleanup issues for its next batch of at most batch
// rows, so that tests can EXPLAIN it and hold it open in a transaction of their own.
func (s *MySQLStore) CleanupStatement(ctx context.Context, batch int) (string, []any, error) {
	q, args, n, err := s.cleanupBatch(ctx, batch)
	if err == nil && n == 0 {
		err = errors.New("no expired rows")
	}
	return q, args, err
}
