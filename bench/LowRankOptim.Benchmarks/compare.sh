#!/usr/bin/env bash
# Step-time benchmarks, BEFORE (a baseline commit) against AFTER (a source tree), in one run, into one
# markdown table. See README.md beside this script and docs/benchmarks.md, "Step time (BenchmarkDotNet)".
#
#   bench/LowRankOptim.Benchmarks/compare.sh [BASELINE [AFTER_TREE]] [options]
#
#   BASELINE     a commit of this repository (default 394221e); checked out into a temporary git worktree
#   AFTER_TREE   a checkout whose src/ is the "after" library (default: the repository this script is in)
#
# Options:
#   --shapes LIST      weight shapes (default 4096x4096,4096x11008)
#   --ranks LIST       ranks of the ranked methods (default 128,512)
#   --methods LIST     method ids (default: every method either build has; see --list-methods)
#   --iterations N     measured steps per case (default 5)
#   --warmup N         warm-up steps per case, after the setup's refreshing step (default 40: .NET recompiles the
#                      fused CPU kernels' loops optimized only after ~30 calls, see docs/kernels.md)
#   --out FILE         the merged table (default bench/LowRankOptim.Benchmarks/results/step-before-after.md)
#   --raw DIR          BenchmarkDotNet's own reports and logs (default results/raw/<UTC timestamp>, git-ignored)
#   --work DIR         build folder (default: a new folder under ${TMPDIR:-/tmp}, removed at the end)
#   --apollo auto|true|false  HAS_APOLLO for the after build (default auto: set when the after tree's
#                      the source has src/LowRankOptim/Methods/Apollo); the baseline is always auto
#   --keep             keep the build folder and the baseline worktree
#
# The benchmark code is the project beside this script, in both builds: only the referenced library source
# differs (-p:LowRankOptimSourceRoot=<tree>/src). Each shape × method is one BenchmarkDotNet process per side;
# the two sides alternate per group (before-after, then after-before, ...) so slow drift of the machine's state
# lands on both. Run on a quiet machine: the 1-minute load average is recorded before, during and after.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT="$SCRIPT_DIR/LowRankOptim.Benchmarks.csproj"
REPO=$(git -C "$SCRIPT_DIR" rev-parse --show-toplevel)
cd "$REPO" # global.json: the same SDK as the repository's own builds

BASELINE=394221e
AFTER="$REPO"
SHAPES=4096x4096,4096x11008
RANKS=128,512
METHODS=""
ITERATIONS=5
WARMUP=40
OUT="$SCRIPT_DIR/results/step-before-after.md"
RAW=""
WORK=""
KEEP=0
APOLLO=auto
positional=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shapes) SHAPES=$2; shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    --methods) METHODS=$2; shift 2 ;;
    --iterations) ITERATIONS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --raw) RAW=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --apollo) APOLLO=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) positional+=("$1"); shift ;;
  esac
done
[[ ${#positional[@]} -ge 1 ]] && BASELINE=${positional[0]}
[[ ${#positional[@]} -ge 2 ]] && AFTER=$(cd "${positional[1]}" && pwd)
[[ ${#positional[@]} -le 2 ]] || { echo "too many arguments (see --help)" >&2; exit 2; }
[[ "$APOLLO" =~ ^(auto|true|false)$ ]] || { echo "--apollo takes auto, true or false" >&2; exit 2; }
[[ -f "$AFTER/src/LowRankOptim/LowRankOptim.csproj" ]] || { echo "$AFTER has no src/LowRankOptim/LowRankOptim.csproj" >&2; exit 2; }

# libtorch's idle OpenMP threads spin-wait and take the cores from the next op (docs/kernels.md).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

BASE_SHA=$(git -C "$REPO" rev-parse --verify "$BASELINE^{commit}")
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
[[ -n "$RAW" ]] || RAW="$SCRIPT_DIR/results/raw/$STAMP"
[[ -n "$WORK" ]] || WORK=$(mktemp -d "${TMPDIR:-/tmp}/lro-bdn.XXXXXX")
mkdir -p "$RAW/before" "$RAW/after" "$WORK" "$(dirname "$OUT")"
BASE_TREE="$WORK/baseline"

cleanup() {
  if [[ $KEEP -eq 0 ]]; then
    git -C "$REPO" worktree remove --force "$BASE_TREE" 2>/dev/null || true
    rm -rf "$WORK"
  else
    echo "kept $WORK (remove the worktree with: git -C $REPO worktree remove --force $BASE_TREE)"
  fi
}
trap cleanup EXIT

log() { echo "[$(date -u +%H:%M:%S)] $*"; }
load1() { cut -d' ' -f1 /proc/loadavg; }

START_EPOCH=$(date +%s)
UPTIME_BEFORE=$(uptime)
log "load before: $UPTIME_BEFORE"

log "baseline $BASELINE = $BASE_SHA -> $BASE_TREE"
git -C "$REPO" worktree add --detach --quiet "$BASE_TREE" "$BASE_SHA"

dirty() { [[ -n "$(git -C "$1" status --porcelain -- "$2")" ]] && echo "$3" || true; }
if git -C "$AFTER" rev-parse --git-dir >/dev/null 2>&1; then
  AFTER_DESC="$(git -C "$AFTER" rev-parse --short HEAD)$(dirty "$AFTER" src ' + uncommitted changes in src/')"
else
  AFTER_DESC="(not a git checkout)"
fi
BENCH_DESC="$(git -C "$REPO" rev-parse --short HEAD)$(dirty "$REPO" "$SCRIPT_DIR" ' + uncommitted changes')"

build() { # side source-root [extra msbuild args]
  log "build $1 against $2/src"
  dotnet build "$PROJECT" -c Release --nologo -v minimal --artifacts-path "$WORK/$1" \
    -p:LowRankOptimSourceRoot="$2/src" "${@:3}" >"$RAW/build-$1.log" 2>&1 \
    || { tail -30 "$RAW/build-$1.log" >&2; echo "build $1 failed: $RAW/build-$1.log" >&2; exit 1; }
}
build before "$BASE_TREE"
if [[ "$APOLLO" == auto ]]; then build after "$AFTER"; else build after "$AFTER" -p:LowRankOptimHasApollo="$APOLLO"; fi
DLL_before="$WORK/before/bin/LowRankOptim.Benchmarks/release/LowRankOptim.Benchmarks.dll"
DLL_after="$WORK/after/bin/LowRankOptim.Benchmarks/release/LowRankOptim.Benchmarks.dll"

methods_of() { dotnet "$1" --list-methods | cut -f1; }
if [[ -z "$METHODS" ]]; then
  # Every method of the after build, then any the before build has on top (each side skips what it lacks).
  METHODS=$( { methods_of "$DLL_after"; methods_of "$DLL_before"; } | awk '!seen[$0]++' | paste -sd, -)
fi
IFS=, read -r -a method_list <<<"$METHODS"
IFS=, read -r -a shape_list <<<"$SHAPES"

run_side() { # side shape method group-index
  local side=$1 shape=$2 method=$3 dir="$RAW/$1/$4-$2-$3" dll_var="DLL_$1"
  log "  $side: $method @ $shape (load $(load1))"
  if ! dotnet "${!dll_var}" --shapes "$shape" --ranks "$RANKS" --methods "$method" \
      --iterations "$ITERATIONS" --warmup "$WARMUP" --artifacts "$dir" >"$dir.log" 2>&1; then
    echo "  $side run failed (see $dir.log); its rows will read 'failed' or '—'" >&2
  fi
  grep -E '^// setup' "$dir.log" | sed 's/^/    /' || true
}

group=0
for shape in "${shape_list[@]}"; do
  for method in "${method_list[@]}"; do
    group=$((group + 1))
    tag=$(printf '%02d' "$group")
    if (( group % 2 )); then order=(before after); else order=(after before); fi
    for side in "${order[@]}"; do run_side "$side" "$shape" "$method" "$tag"; done
  done
done

UPTIME_AFTER=$(uptime)
ELAPSED=$(( $(date +%s) - START_EPOCH ))
log "load after: $UPTIME_AFTER"

DOTNET_SDK=$(dotnet --version)
DOTNET_RUNTIME=$(dotnet --list-runtimes | awk '/Microsoft.NETCore.App/ {v=$2} END {print v}')
TORCHSHARP=$(sed -n 's/.*Include="TorchSharp-cpu" Version="\([^"]*\)".*/\1/p' "$REPO/Directory.Packages.props")
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
PREAMBLE="$WORK/preamble.md"
{
  echo "# Optimizer step time, before / after (BenchmarkDotNet)"
  echo
  echo "- **Before**: \`$BASELINE\` = $BASE_SHA (temporary worktree). **After**: \`$AFTER\` at $AFTER_DESC."
  echo "- **Benchmark code**: bench/LowRankOptim.Benchmarks at $BENCH_DESC, the same source in both builds."
  echo "- **Machine**: $CPU; $(nproc) cores; $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM; $(. /etc/os-release && echo "$PRETTY_NAME")."
  echo "- **Versions**: .NET SDK $DOTNET_SDK, runtime $DOTNET_RUNTIME; TorchSharp-cpu $TORCHSHARP; BenchmarkDotNet 0.15.8, in-process (InProcessEmitToolchain); OMP_WAIT_POLICY=$OMP_WAIT_POLICY."
  echo "- **Date**: $(date -u '+%Y-%m-%d %H:%M UTC'); total $((ELAPSED / 60)) min $((ELAPSED % 60)) s (builds included)."
  echo "- **Load**: before \`$UPTIME_BEFORE\`; after \`$UPTIME_AFTER\`."
  echo "- **Settings**: shapes $SHAPES; ranks $RANKS; $WARMUP warm-up + $ITERATIONS measured steps per case, 1 step per iteration; sides alternate per shape × method."
  echo "- **Command**: \`bench/LowRankOptim.Benchmarks/compare.sh $BASELINE $AFTER --shapes $SHAPES --ranks $RANKS --methods $METHODS --iterations $ITERATIONS --warmup $WARMUP\`"
  echo "- **Raw reports**: \`${RAW#"$REPO"/}\` (BenchmarkDotNet's GitHub-markdown and JSON reports per run, logs)."
} >"$PREAMBLE"

dotnet "$DLL_after" merge --before "$RAW/before" --after "$RAW/after" --out "$OUT" --preamble "$PREAMBLE" >/dev/null
cp "$PREAMBLE" "$RAW/preamble.md"
log "wrote $OUT ($((ELAPSED / 60)) min $((ELAPSED % 60)) s)"
cat "$OUT"
