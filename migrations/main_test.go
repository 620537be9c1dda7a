package migrations_test

import (
	"os"
	"testing"

	"github.com/txconsume/txconsume/internal/testenv"
)

// TestMain terminates the containers testenv may have started for these tests.
func TestMain(m *testing.M) { os.Exit(testenv.M(m).Run()) }
