# Reads `go test -bench` output and prints, for every benchmark that has a baseline run beside it,
# the throughput ratio candidate / baseline (mean msgs/s over -count runs), one line each.
#   .../bare            is the baseline of .../process and .../process-batch
#   .../process-each    is the baseline of .../process-batch as well (batch vs one by one)
#   .../plain-loop      is the baseline of .../relay (the outbox relay vs sending in a loop)
# BenchmarkProtectionCost measures its variants interleaved and reports the ratios itself
# (units "a/b"): those are printed as "a vs b", with both throughputs. Units per operation (ns/op,
# allocs/op) are not ratios.
/^Benchmark/ {
  name = $1; sub(/-[0-9]+$/, "", name)
  for (i = 2; i < NF; i++) {
    unit = $(i + 1)
    if (unit == "msgs/s") { sum[name] += $i; n[name]++ }
    if (unit ~ /-msgs\/s$/) { v = unit; sub(/-msgs\/s$/, "", v); vsum[name, v] += $i }
    if (unit ~ /^[a-z]+\/[a-z]+$/ && unit != "msgs/s" && unit !~ /\/op$/) { rsum[name, unit] += $i; rn[name, unit]++; ratios[name, unit] = 1 }
  }
}
END {
  for (key in ratios) {
    split(key, part, SUBSEP); name = part[1]; unit = part[2]; split(unit, ab, "/")
    k = rn[name, unit]
    printf "%-70s %9.0f %9.0f %6.2fx\n", name " " ab[1] " vs " ab[2], vsum[name, ab[1]] / k, vsum[name, ab[2]] / k, rsum[name, unit] / k
  }
  for (name in sum) {
    base = name; cand = name
    if (name ~ /\/process$/ || name ~ /\/process-batch$/) { sub(/\/[^\/]+$/, "/bare", base); pair(name, base) }
    if (name ~ /\/process-batch$/) { base = name; sub(/\/[^\/]+$/, "/process-each", base); pair(name, base) }
    if (name ~ /\/relay$/) { sub(/\/[^\/]+$/, "/plain-loop", base); pair(name, base) }
  }
}
function pair(c, b,   cm, bm) {
  if (!(b in sum)) return
  cm = sum[c] / n[c]; bm = sum[b] / n[b]
  label = c " vs " substr(b, length(b) - index(reverse(b), "/") + 2)
  printf "%-70s %9.0f %9.0f %6.2fx\n", label, cm, bm, cm / bm
}
function reverse(s,   r, i) { r = ""; for (i = length(s); i > 0; i--) r = r substr(s, i, 1); return r }
