#!/bin/sh
# Runs every test of tlsgate and prints one line per test and a closing
# "N passed, N failed" line.  Called by `make check` and `make asan`.
#
#   unit     $O/tests/unit/test_*           (cmocka programs)
#   e2e      tests/e2e/*.py|*.sh            (real daemon, curl, TLS servers)
#   e2e-builtin  tests/e2e/0[2-8]-*.py again with E2E_TLS=builtin
#   interop  tests/interop/*.sh|*.py        (built-in TLS client vs real servers)
#   fuzz     build-fuzz/fuzz_* for FUZZ_SMOKE seconds each (skipped by make asan,
#            whose programs are already sanitized)
#
# Environment: O (object dir), TLSGATE, TLSGATE_PROBE, ONLY (a substring:
# run only tests whose path contains it), FUZZ_SMOKE (seconds, default 10).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
O=${O:-build}
export TLSGATE=${TLSGATE:-$top/tlsgate}
export TLSGATE_PROBE=${TLSGATE_PROBE:-$top/tlsgate-probe}
export SHARED=${SHARED:-$(cd "$top/.." && pwd)/shared}
export OPENSSL=${OPENSSL:-openssl}
export TOP="$top"
export PYTHONDONTWRITEBYTECODE=1
FUZZ_SMOKE=${FUZZ_SMOKE:-10}
ONLY=${ONLY:-}
logdir=$top/build/test-logs
mkdir -p "$logdir"

pass=0; fail=0; failed=""
run_one() { # name, command...
	name=$1; shift
	case "$name" in *"$ONLY"*) ;; *) return 0 ;; esac
	log=$logdir/$(echo "$name" | tr '/' '_').log
	start=$(date +%s)
	if "$@" >"$log" 2>&1; then
		pass=$((pass + 1)); echo "PASS $name ($(( $(date +%s) - start ))s)"
	else
		rc=$?
		fail=$((fail + 1)); failed="$failed $name"
		echo "FAIL $name (exit $rc, $(( $(date +%s) - start ))s); last lines of $log:"
		tail -n 30 "$log" | sed 's/^/    | /'
	fi
}

for t in "$O"/tests/unit/test_*; do
	case "$t" in *.o|*.d) continue ;; esac
	[ -f "$t" ] && [ -x "$t" ] || continue
	run_one "unit/$(basename "$t")" "$t"
done
for dir in e2e interop; do
	for t in tests/$dir/*.py tests/$dir/*.sh; do
		[ -f "$t" ] || continue
		case "$t" in */lib.sh|*/lib.py|*/_*) continue ;; esac
		run_one "$dir/$(basename "$t")" timeout 300 "$t"
	done
done
# The core scenarios again, every route over the built-in TLS 1.3 client.
for t in tests/e2e/0[2-8]-*.py; do
	[ -f "$t" ] || continue
	run_one "e2e-builtin/$(basename "$t")" env E2E_TLS=builtin timeout 300 "$t"
done
if [ -z "${NO_FUZZ:-}" ]; then
	for f in build-fuzz/fuzz_*; do
		[ -x "$f" ] || continue
		t=${f#build-fuzz/fuzz_}
		mkdir -p "build-fuzz/corpus/$t"
		run_one "fuzz/$t" "$f" -max_total_time="$FUZZ_SMOKE" \
			"build-fuzz/corpus/$t" "tests/fuzz/corpus/$t"
	done
fi

[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
