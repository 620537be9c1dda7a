# Reads `go test -bench` output and prints, for every benchmark that reports latency percentiles
# (p50-ms, p99-ms), the mean p50 and the worst p99 over its -count runs, one line each.
/^Benchmark/ {
  name = $1; sub(/-[0-9]+$/, "", name)
  for (i = 2; i < NF; i++) {
    if ($(i + 1) == "p50-ms") { p50[name] += $i; n[name]++ }
    if ($(i + 1) == "p99-ms" && $i > p99[name]) p99[name] = $i
  }
}
END {
  for (name in n) printf "%-70s %9.2f %9.2f\n", name, p50[name] / n[name], p99[name]
}
