// Package benchenv gives the benchmarks their services: databases of their own on the server the
// DSN names, the RocketMQ name server, and a description of the machine for the results.
package benchenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/txconsume"
)

// Environment variables, as scripts/services.sh env prints them.
const (
	EnvMySQLDSN = "TXCONSUME_MYSQL_DSN"
	EnvNamesrv  = "TXCONSUME_ROCKETMQ_NAMESRV"
	EnvRedis    = "TXCONSUME_REDIS_ADDR"
)

// BaseDSN returns the DSN of the database server, with interpolateParams=true (what the README
// recommends) unless the DSN says otherwise.
func BaseDSN() (string, error) {
	dsn := os.Getenv(EnvMySQLDSN)
	if dsn == "" {
		return "", fmt.Errorf("benchenv: %s is not set: run `eval \"$(scripts/services.sh env)\"` or `make bench`", EnvMySQLDSN)
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("benchenv: %s: %w", EnvMySQLDSN, err)
	}
	// The driver parses interpolateParams into cfg.InterpolateParams, false whether absent or
	// set to false: the query string tells them apart.
	_, query, _ := strings.Cut(dsn, "?")
	if params, err := url.ParseQuery(query); err != nil || !params.Has("interpolateParams") {
		cfg.InterpolateParams = true
	}
	cfg.DBName = ""
	return cfg.FormatDSN(), nil
}

// NameServer returns the RocketMQ name server address.
func NameServer() (string, error) {
	ns := os.Getenv(EnvNamesrv)
	if ns == "" {
		return "", fmt.Errorf("benchenv: %s is not set: run `eval \"$(scripts/services.sh env)\"` or `make bench`", EnvNamesrv)
	}
	return ns, nil
}

// DSNFor returns base with the database name set to name.
func DSNFor(base, name string) string {
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		panic(err) // base was parsed by BaseDSN
	}
	cfg.DBName = name
	return cfg.FormatDSN()
}

// Open opens a pool on the database name of the server base names, sized for conns connections.
func Open(base, name string, conns int) (*sqlx.DB, error) {
	db, err := sqlx.Open("mysql", DSNFor(base, name))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	return db, nil
}

// OpenGuarded opens a pool as the README tells users to, with txconsume.Open: the pool whose
// driver keeps a handler's mistakes from committing at no cost in statements.
func OpenGuarded(base, name string, conns int) (*sqlx.DB, error) {
	db, err := txconsume.Open(DSNFor(base, name))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	return db, nil
}

// TempDatabase creates a database named prefix_<random> and returns its name and a function that
// drops it.
func TempDatabase(ctx context.Context, base, prefix string) (string, func(), error) {
	name := prefix + "_" + RandomHex(4)
	if err := Exec(ctx, base, "CREATE DATABASE `"+name+"`"); err != nil {
		return "", nil, err
	}
	return name, func() { _ = Exec(context.Background(), base, "DROP DATABASE IF EXISTS `"+name+"`") }, nil
}

// Exec runs one statement on the server without selecting a database.
func Exec(ctx context.Context, base, stmt string, args ...any) error {
	db, err := sql.Open("mysql", base)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, stmt, args...); err != nil {
		return fmt.Errorf("benchenv: %s: %w", stmt, err)
	}
	return nil
}

// RandomHex returns n random bytes in hex.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Machine describes where the numbers come from.
type Machine struct {
	Date        string
	CPU         string
	Cores       int
	MemoryGiB   int
	OS          string
	Go          string
	Database    string // server version
	BufferPool  string // innodb_buffer_pool_size
	LoadBefore  string // /proc/loadavg when the run began
	LoadAfter   string // and when it ended
	OtherLoad   string // what else ran: the caller's note
	RocketMQ    string
	Description string
}

// DescribeMachine fills Machine from the system and the database server.
func DescribeMachine(ctx context.Context, base string) Machine {
	m := Machine{
		Date:       time.Now().UTC().Format("2006-01-02 15:04 MST"),
		Cores:      runtime.NumCPU(),
		Go:         runtime.Version(),
		CPU:        cpuModel(),
		MemoryGiB:  memGiB(),
		OS:         osName(),
		LoadBefore: LoadAverage(),
	}
	if db, err := sql.Open("mysql", base); err == nil {
		defer db.Close()
		var version string
		var pool int64
		if err := db.QueryRowContext(ctx, "SELECT VERSION(), @@innodb_buffer_pool_size").Scan(&version, &pool); err == nil {
			m.Database = version
			m.BufferPool = fmt.Sprintf("%d MiB", pool>>20)
		}
	}
	return m
}

// LoadAverage returns the first three fields of /proc/loadavg.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memGiB() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var kb int
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "MemTotal:") {
			_, _ = fmt.Sscanf(strings.TrimPrefix(line, "MemTotal:"), "%d", &kb)
		}
	}
	return (kb + 512*1024) >> 20
}

func osName() string {
	b, err := os.ReadFile("/etc/os-release")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				return strings.Trim(v, `"`)
			}
		}
	}
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	return runtime.GOOS
}
