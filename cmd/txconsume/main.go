// Command txconsume is the operator tool for txconsume's tables and topics: it applies the schema,
// deletes old records, shows what is stored for a key, removes stuck or unwanted records, creates
// RocketMQ topics, and lists and replays a consumer group's dead letters.
//
// Run `txconsume help` for the commands. The MySQL DSN comes from -dsn or TXCONSUME_MYSQL_DSN,
// the Redis address (for the idem Redis store) from -redis or TXCONSUME_REDIS_ADDR, the RocketMQ
// name servers from -namesrv or TXCONSUME_ROCKETMQ_NAMESRV.
//
// Exit status: 0 on success, 1 when the command failed, 2 on bad usage.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
