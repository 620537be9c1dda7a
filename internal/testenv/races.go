package testenv

import "strings"

// RaceReports splits the race detector's reports in a process's stderr into those in which an
// access happened in this module's code, returned whole, and those confined to other code (the
// RocketMQ client has data races of its own, see apache/rocketmq-client-go #790 and PR #1115),
// only counted. Tests that run the client in a child process fail on the first kind.
func RaceReports(stderr string) (module []string, others int) {
	for _, report := range strings.Split(stderr, "==================") {
		if !strings.Contains(report, "WARNING: DATA RACE") {
			continue
		}
		if raceInvolvesModule(report) {
			module = append(module, report)
			continue
		}
		others++
	}
	return module, others
}

// raceInvolvesModule reports whether the innermost non-runtime frame of either access of a race report
// is in this module.
func raceInvolvesModule(report string) bool {
	lines := strings.Split(report, "\n")
	for i, l := range lines {
		access := strings.HasPrefix(l, "Read") || strings.HasPrefix(l, "Write") || strings.HasPrefix(l, "Previous")
		if !access || !strings.Contains(l, " at 0x") {
			continue
		}
		for _, f := range lines[i+1:] {
			f = strings.TrimSpace(f)
			if f == "" {
				break
			}
			if strings.HasPrefix(f, "/") || strings.HasPrefix(f, "runtime.") || strings.HasPrefix(f, "sync.") ||
				strings.HasPrefix(f, "sync/") || strings.HasPrefix(f, "internal/") {
				continue
			}
			if strings.HasPrefix(f, "github.com/txconsume/txconsume/") {
				return true
			}
			break
		}
	}
	return false
}
