package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
)

// Environment variables read for settings not given as flags.
const (
	envDSN   = "TXCONSUME_MYSQL_DSN"
	envRedis = "TXCONSUME_REDIS_ADDR"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// command is one subcommand. run returns an error; a *usageError means exit status 2.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, out io.Writer, errOut io.Writer) error
}

func commands() []command {
	return []command{
		{"migrate", "apply, roll back or list the schema migrations (up|down|status)", runMigrate},
		{"gc", "delete dedup records older than a retention, and expired idem MySQL records", runGC},
		{"inspect", "show the dedup record and the idem records stored for a key", runInspect},
		{"release", "remove a stuck idem PROCESSING record so the message can be processed", runRelease},
		{"forget", "DANGEROUS: delete a dedup record so that a message is applied again", runForget},
		{"topic", "create a RocketMQ topic (and a group's retry topic) on the brokers of a cluster", runTopic},
		{"dlq", "list a consumer group's dead letters, or replay them to their original topic", runDLQ},
		{"outbox", "show the outbox: pending messages and the oldest one's age per topic (status)", runOutbox},
	}
}

const mainUsage = `txconsume: operator tool for the txconsume tables and RocketMQ topics.

Usage:
  txconsume <command> [flags]
  txconsume help [command]

Commands:
%s
The database commands take -dsn (default $TXCONSUME_MYSQL_DSN), a go-sql-driver/mysql DSN of
the service's database. Commands that reach the idem Redis store take -redis (default
$TXCONSUME_REDIS_ADDR), the RocketMQ commands (topic, dlq) -namesrv (default
$TXCONSUME_ROCKETMQ_NAMESRV). Run "txconsume <command> -h" for a command's flags.

Exit status: 0 success, 1 failure, 2 bad usage.
`

func printMainUsage(w io.Writer) {
	var b strings.Builder
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, mainUsage, b.String())
}

// run is the whole program: it parses args (without the program name), runs the command and
// returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printMainUsage(stderr)
		fmt.Fprintln(stderr, "\ntxconsume: no command given")
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 {
			return run(ctx, []string{rest[0], "-h"}, stdout, stderr)
		}
		printMainUsage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		err := c.run(ctx, rest, stdout, stderr)
		var ue *usageError
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "txconsume %s: %v\nRun \"txconsume %s -h\" for usage.\n", name, ue.msg, name)
			return exitUsage
		default:
			fmt.Fprintf(stderr, "txconsume %s: %v\n", name, err)
			return exitFailure
		}
	}
	fmt.Fprintf(stderr, "txconsume: unknown command %q\nRun \"txconsume help\" for the commands.\n", name)
	return exitUsage
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// newFlags returns a flag set that reports errors instead of exiting and prints its usage, headed
// by synopsis and description, to stderr on -h or on a parse error.
func newFlags(name, synopsis, description string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: txconsume %s %s\n\n%s\n\nFlags:\n", name, synopsis, strings.TrimSpace(description))
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, turning parse errors into usage errors and rejecting positional arguments
// beyond maxArgs.
func parse(fs *flag.FlagSet, args []string, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		// The flag package has printed the error and the usage already.
		return usagef("%v", err)
	}
	if fs.NArg() > maxArgs {
		return usagef("unexpected argument %q", fs.Arg(maxArgs))
	}
	return nil
}

// dsnFlag registers -dsn. Its default, $TXCONSUME_MYSQL_DSN, is read when the database is
// opened rather than set as the flag's default, which -h would print, password and all.
func dsnFlag(fs *flag.FlagSet) *string {
	return fs.String("dsn", "", "MySQL DSN, e.g. user:pass@tcp(host:3306)/db (default $"+envDSN+")")
}

// redisFlags registers -redis and -redis-prefix.
func redisFlags(fs *flag.FlagSet) (addr, prefix *string) {
	addr = fs.String("redis", "", "Redis address host:port of the idem Redis store (default $"+envRedis+")")
	prefix = fs.String("redis-prefix", "txconsume:", "key prefix the idem Redis store was created with")
	return addr, prefix
}

// openMySQL opens and pings a pool on dsn, or on $TXCONSUME_MYSQL_DSN when dsn is "".
func openMySQL(ctx context.Context, dsn string) (*sqlx.DB, error) {
	if dsn == "" {
		dsn = os.Getenv(envDSN)
	}
	if dsn == "" {
		return nil, usagef("no database: set -dsn or %s", envDSN)
	}
	db, err := sqlx.Open("mysql", dsn)
	if err != nil {
		return nil, usagef("bad DSN: %v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("connect to MySQL: %w", err)
	}
	return db, nil
}

// openRedis opens and pings a client on addr, or on $TXCONSUME_REDIS_ADDR when addr is "".
func openRedis(ctx context.Context, addr string) (*redis.Client, error) {
	if addr == "" {
		addr = os.Getenv(envRedis)
	}
	if addr == "" {
		return nil, usagef("no Redis: set -redis or %s", envRedis)
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("connect to Redis %s: %w", addr, err)
	}
	return c, nil
}

// required returns a usage error naming the first empty flag among names.
func required(fs *flag.FlagSet, names ...string) error {
	for _, n := range names {
		if fs.Lookup(n).Value.String() == "" {
			return usagef("-%s is required", n)
		}
	}
	return nil
}

// isNoSuchTable reports MySQL error 1146 (table doesn't exist).
func isNoSuchTable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1146
}
