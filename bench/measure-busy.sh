#!/usr/bin/env bash
# Times the README's main job twice: on the machine as it is, then with one competing busy process (a shell
# loop that keeps one core busy), and prints both wall times and their ratio (issue 13: target <= 2x).
# Run it on an otherwise idle machine; the load average before each run is printed, since other work on the
# machine makes both numbers meaningless. Extra arguments go to `pretrain`, e.g. `--steps 200` for a short check.
#   bench/measure-busy.sh                 # the main job as the README runs it
#   bench/measure-busy.sh --steps 200     # shorter
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build -c Release bench/LowRankOptim.Bench >/dev/null
out=runs/measure-busy
mkdir -p "$out"

run() { # $1 label; the rest: pretrain options
    local label=$1; shift
    echo "$label: load average $(cut -d' ' -f1-3 /proc/loadavg) before the run" >&2
    local start end
    start=$(date +%s.%N)
    dotnet run -c Release --no-build --project bench/LowRankOptim.Bench -- pretrain --output "$out/$label" "$@" >"$out/$label.log" 2>&1
    end=$(date +%s.%N)
    grep -m1 'cores; torch threads' "$out/$label.log" >&2 || true
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f\n", b - a }'
}

idle=$(run idle "$@")
echo "idle: ${idle} s" >&2
( while :; do :; done ) &
hog=$!
trap 'kill "$hog" 2>/dev/null || true' EXIT
sleep 1
busy=$(run busy "$@")
kill "$hog" 2>/dev/null || true
echo "busy: ${busy} s" >&2
awk -v i="$idle" -v b="$busy" 'BEGIN { printf "main job: idle %.0f s, with one busy process %.0f s, ratio %.2f\n", i, b, b / i }'
