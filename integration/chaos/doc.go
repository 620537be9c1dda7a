// Package chaos holds txconsume's fault-injection suite: each scenario consumes a steady stream of
// messages (duplicates included) with real consumer processes while it breaks the infrastructure
// under them — database restarts, an unreachable database, connections killed mid-transaction and
// at COMMIT, broker restarts, a second broker that joins and leaves, consumers killed and started
// over and over, the status mode's store restarted — and then counts the effects in the database:
// nothing applied twice, nothing lost, every message applied or visibly dead-lettered. It also
// measures how long consumption takes to come back after each fault.
//
// Servers that a scenario stops or kills are private instances (testenv.PrivateDatabase,
// PrivateRocketMQ, PrivateRedis), never the shared services other tests use.
//
// `make test` runs a short, bounded form of every scenario. `make chaos` runs the long form:
// more messages, randomised faults over many cycles, and a summary table per database server.
//
// Environment:
//
//	TXCONSUME_CHAOS=long          the long form (default: short)
//	TXCONSUME_CHAOS_SEED=<n>      replay a run: the seed every random choice derives from (each
//	                              scenario from the seed and its name, so one scenario replays alone)
//	TXCONSUME_CHAOS_SUMMARY=<f>   append the summary table to file f
//	TXCONSUME_CHAOS_LOG_DIR=<d>   write every log record of every consumer process (the RocketMQ
//	                              client's from info level) to a file per process in directory d
package chaos
