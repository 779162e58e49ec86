#!/usr/bin/env bash
# Profile Pomoc's hot path under the peer harness's closed-loop saturation.
#
#   bench/profile.sh [OUTDIR] [SECONDS]        (from the project root)
#
# Runs the harness for the pomoc peer only (quick sizes, a saturation window of
# SECONDS+10 s), waits for the saturation phase, then records server A and B with
# py-spy for SECONDS (default 15) in speedscope format and as `py-spy top`-like
# flat summaries (--format raw, folded stacks). Needs ~/.peer-bench (see README.md)
# and `.venv/bin/pip install py-spy`.
set -euo pipefail
out=${1:-/tmp/pomoc-profile}
secs=${2:-15}
mkdir -p "$out"
clock=$(.venv/bin/python -c 'import sys; sys.path.insert(0, "bench"); import _common; print(_common.default_clock())')
port_base=${PORT_BASE:-18300}
~/.peer-bench/bin/python ../shared/peer-bench/run.py --quick --peers pomoc --pomoc-python .venv/bin/python \
    --results-dir "$out" --port-base "$port_base" --sat-s $((secs + 10)) \
    --pomoc-env POMOC_CLOCK="$clock" --pomoc-env POMOC_REDIS_PREFIX="pbench-prof-$$:" \
    --pomoc-env POMOC_RATE_USER_MESSAGES=off --pomoc-env POMOC_RATE_SHOP_MESSAGES=off \
    --pomoc-env POMOC_RATE_AGENT_MESSAGES=off --pomoc-env POMOC_RATE_SHOP_TICKETS=off \
    --pomoc-env POMOC_MAX_PENDING_PER_ADDRESS=1000000 \
    > "$out/harness.md" 2> "$out/harness.err" &
harness=$!
for _ in $(seq 1 600); do   # at most ~5 min
    grep -q "saturation: window" "$out/harness.err" 2>/dev/null && break
    kill -0 $harness 2>/dev/null || { echo "harness ended early:"; tail -5 "$out/harness.err"; exit 1; }
    sleep 0.5
done
sleep 2   # past the saturation warm-up
pid_a=$(pgrep -f "server serve --host 127.0.0.1 --port $port_base\$" | head -1)
pid_b=$(pgrep -f "server serve --host 127.0.0.1 --port $((port_base + 1))\$" | head -1)
echo "profiling A=$pid_a B=$pid_b for $secs s"
.venv/bin/py-spy record --pid "$pid_a" --duration "$secs" --rate 200 --format speedscope -o "$out/A.speedscope.json" --nonblocking >/dev/null 2>&1 &
.venv/bin/py-spy record --pid "$pid_b" --duration "$secs" --rate 200 --format speedscope -o "$out/B.speedscope.json" --nonblocking >/dev/null 2>&1 &
.venv/bin/py-spy record --pid "$pid_a" --duration "$secs" --rate 200 --format raw -o "$out/A.folded" --nonblocking >/dev/null 2>&1 &
.venv/bin/py-spy record --pid "$pid_b" --duration "$secs" --rate 200 --format raw -o "$out/B.folded" --nonblocking >/dev/null 2>&1 &
.venv/bin/python bench/pgwait.py --seconds "$secs" > "$out/pgwait.txt" 2>&1 || true
wait %2 %3 %4 %5 || true
wait $harness || true
for side in A B; do
    echo "== $side: top self frames (% of samples)"
    .venv/bin/python bench/folded.py "$out/$side.folded" | head -25
done
cat "$out/pgwait.txt"
.venv/bin/python bench/cleanup.py --prefix "pbench-prof-$$:" >/dev/null
echo "files: $out/{A,B}.speedscope.json (open in https://www.speedscope.app), $out/harness.md"
