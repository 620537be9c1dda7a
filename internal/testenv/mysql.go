package testenv

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
)

var mysqlBase struct {
	once sync.Once
	dsn  string
	err  error
}

// Server describes the database server the tests run on.
type Server struct {
	// Name is "MariaDB" or "MySQL".
	Name string
	// Version is the server's VERSION(), for example "10.11.14-MariaDB-0+deb12u2" or "9.7.4-2".
	Version string
	// Addr is the host:port (or socket) of the DSN.
	Addr string
}

// IsMariaDB reports whether the server is MariaDB rather than Oracle MySQL.
func (s Server) IsMariaDB() bool { return s.Name == "MariaDB" }

func (s Server) String() string { return s.Name + " " + s.Version + " at " + s.Addr }

var mysqlServer struct {
	mu     sync.Mutex
	server *Server
}

// MySQLServer returns the name and version of the server the tests use (see MySQLBaseDSN),
// asking it once per test binary.
func MySQLServer(t testing.TB) Server {
	t.Helper()
	mysqlServer.mu.Lock()
	defer mysqlServer.mu.Unlock()
	if mysqlServer.server != nil {
		return *mysqlServer.server
	}
	base := MySQLBaseDSN(t)
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatalf("testenv: parse %s: %v", EnvMySQLDSN, err)
	}
	db, err := sqlx.Open("mysql", base)
	if err != nil {
		t.Fatalf("testenv: open mysql: %v", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		unavailable(t, "MySQL", err)
	}
	s := Server{Name: "MySQL", Version: version, Addr: cfg.Addr}
	if strings.Contains(strings.ToLower(version), "mariadb") {
		s.Name = "MariaDB"
	}
	if want := os.Getenv(EnvExpectServer); want != "" && !strings.EqualFold(want, s.Name) {
		t.Fatalf("testenv: %s=%s but %s leads to %s", EnvExpectServer, want, EnvMySQLDSN, s)
	}
	mysqlServer.server = &s
	return s
}

// MySQLBaseDSN returns the DSN of the server the tests use, without a per-test database.
func MySQLBaseDSN(t testing.TB) string {
	t.Helper()
	mysqlBase.once.Do(func() {
		if dsn := os.Getenv(EnvMySQLDSN); dsn != "" {
			mysqlBase.dsn = dsn
			return
		}
		mysqlBase.dsn, mysqlBase.err = startMySQLContainer()
	})
	if mysqlBase.err != nil {
		unavailable(t, "MySQL", mysqlBase.err)
	}
	return mysqlBase.dsn
}

// MySQLDSN creates a fresh database for this test, drops it when the test ends, and returns a DSN
// that selects it. The DSN keeps the base DSN's parameters.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(MySQLBaseDSN(t))
	if err != nil {
		t.Fatalf("testenv: parse %s: %v", EnvMySQLDSN, err)
	}
	admin, err := sqlx.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("testenv: open mysql: %v", err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		unavailable(t, "MySQL", err)
	}
	server := MySQLServer(t)
	name := UniqueName(t, "txc")
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4"); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	// Every test's log names the server it ran on: the same tests run on MariaDB and on MySQL.
	t.Logf("testenv: database %s on %s", name, server)
	t.Cleanup(func() {
		drop, err := sqlx.Open("mysql", cfg.FormatDSN())
		if err != nil {
			t.Errorf("testenv: reopen mysql to drop %s: %v", name, err)
			return
		}
		defer drop.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := drop.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}

// MySQL opens a pool on a fresh database for this test (see MySQLDSN); the pool is closed
// before the database is dropped.
func MySQL(t testing.TB) *sqlx.DB {
	t.Helper()
	return OpenMySQL(t, MySQLDSN(t))
}

// OpenMySQL opens another pool on dsn, closed when the test ends. Two pools on one database
// behave like two service instances.
func OpenMySQL(t testing.TB, dsn string) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("testenv: open %s: %v", dsn, err)
	}
	db.SetMaxOpenConns(64)
	db.SetMaxIdleConns(64)
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatalf("testenv: ping mysql: %v", err)
	}
	return db
}

func mysqlDSNFromParts(user, pass, addr, db string) string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, pass, "tcp", addr, db
	return cfg.FormatDSN()
}

// DSNWithParams returns dsn with the query parameters params ("a=1&b=2") added; a parameter the
// DSN already has is overridden (go-sql-driver/mysql takes the last value).
func DSNWithParams(dsn, params string) string {
	if params == "" {
		return dsn
	}
	if strings.Contains(dsn, "?") {
		return dsn + "&" + params
	}
	return dsn + "?" + params
}
