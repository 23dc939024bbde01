#!/usr/bin/env bash
# fuzz.sh FUZZTIME: run every fuzz target of the module for FUZZTIME each
# (go test allows one target per run).
#
# Go 1.26's fuzz coordinator can fail a target with a bare "context
# deadline exceeded" as -fuzztime ends, having found nothing
# (golang/go#75804, fixed in Go 1.27): it compares the -fuzztime context's
# error with its child's before the child is cancelled, a window a loaded
# machine widens. That error is the coordinator's own deadline: the target
# ran its whole budget and found nothing (a finding is reported instead of
# it, with its input written under testdata/fuzz/). So a run whose only
# failure is exactly that, after at least FUZZTIME, passes with a note;
# anything else — a finding, a hung or killed worker, that message among
# others, or before the budget ran out — fails the build. A retry would
# add nothing, and could meet the race again.
set -uo pipefail

# deadline_race TARGET FUZZTIME < OUTPUT: true when the only failure in
# OUTPUT is the coordinator's deadline race, reported once the budget ran.
deadline_race() {
	local target=$1 budget
	# FUZZTIME in milliseconds ("200ms", "10s", "1m"); anything else
	# ("500x", "1m30s") has no deadline or is not understood: no race.
	case $2 in
	*[0-9]ms) budget=${2%ms} ;;
	*[0-9]s) budget=${2%s}000 ;;
	*[0-9]m)
		budget=${2%m}000
		budget=$((budget * 60))
		;;
	*) return 1 ;;
	esac
	[[ $budget =~ ^[0-9]+$ ]] || return 1
	awk -v target="$target" -v budget="$budget" '
		$0 ~ "^--- FAIL: " target " \\(" {
			fails++
			d = $0; sub(/^.*\(/, "", d); sub(/s\)$/, "", d)
			if (d * 1000 < budget) bad = 1
			infail = 1
			next
		}
		/^--- FAIL: / || /^panic: / || /Failing input written to/ { bad = 1 }
		infail && /^FAIL$/ { infail = 0; next }
		infail && NF > 0 {
			if ($0 == "    context deadline exceeded") race++
			else bad = 1
		}
		END { exit !(fails == 1 && race == 1 && !bad) }
	'
}

# Sourced (by fuzz_selftest.sh): the function only.
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0

fuzztime=${1:-10s}
go=${GO:-go}
# The fuzz targets, "package target" a line, read from the test files the
# build constraints select (go list), without compiling every package's
# tests just to list them.
targets() {
	$go list -f '{{.ImportPath}} {{.Dir}} {{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' ./... |
		while read -r pkg dir files; do
			for f in $files; do
				sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$dir/$f"
			done | sort -u | sed "s|^|$pkg |"
		done
}

list=$(targets) || { echo "fuzz.sh: listing the fuzz targets failed"; exit 1; }
if [ -z "$list" ]; then
	echo "fuzz.sh: no fuzz target found"
	exit 1
fi
status=0
while read -r pkg f; do
	echo "fuzz $pkg $f ($fuzztime)"
	out=$($go test -run '^$' -fuzz "^$f\$" -fuzztime "$fuzztime" -fuzzminimizetime 1s "$pkg" 2>&1 </dev/null)
	rc=$?
	printf '%s\n' "$out" | grep -v '^fuzz: elapsed' || true
	if [ $rc -eq 0 ]; then
		continue
	fi
	if deadline_race "$f" "$fuzztime" <<<"$out"; then
		echo "fuzz $f: ran its $fuzztime and found nothing; the failure above is Go 1.26's fuzz deadline race (golang/go#75804), not a finding"
		continue
	fi
	status=1
done <<<"$list"
exit $status
