package chaos

import (
	"testing"

	"github.com/txconsume/txconsume/internal/testenv"
)

// TestStatusModeStore: the status mode's store is killed (SIGKILL) or stopped (SIGTERM) and
// started again while a stream is consumed: a MySQL store, and a Redis store (with its append-only
// file, as a Redis that must not forget consumed keys is run). The handler's effect is a row written
// outside the store, in another database that stays up. A delivery that cannot reach the store
// does not run the handler and comes again; one whose handler ran keeps trying to mark its record
// consumed for as long as its processing lease lasts, so a store back within the lease costs no
// second effect.
func TestStatusModeStore(t *testing.T) {
	parallel(t)
	run := func(t *testing.T, name string, store *testenv.Instance, cfg scenarioConfig) {
		s := newScenario(t, name, cfg)
		s.startWorker("c1", s.spec())
		s.restartCycles(store, form(1, 4))
	}
	t.Run("mysql store", func(t *testing.T) {
		db := testenv.PrivateDatabase(t)
		run(t, "status mode, MySQL store restart", db,
			scenarioConfig{mode: modeIdemMySQL, storeDSN: testenv.PrivateDatabaseDSN(t, db)})
	})
	t.Run("redis store", func(t *testing.T) {
		redis := testenv.PrivateRedis(t)
		run(t, "status mode, Redis store restart", redis, scenarioConfig{mode: modeIdemRedis, redisAddr: redis.Addr()})
	})
}
