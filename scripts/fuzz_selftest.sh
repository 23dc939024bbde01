#!/usr/bin/env bash
# fuzz_selftest.sh: checks fuzz.sh's deadline_race against the outputs in
# testdata/fuzz-output/: race-FUZZTIME.txt must be taken for Go 1.26's fuzz
# deadline race, fail-*-FUZZTIME.txt (findings, hangs, early or mixed
# failures) must fail the build. race-200ms.txt is a real capture
# (FuzzCut, the 158th of 200 runs of 200 ms on this loaded 2-core
# machine, Go 1.26.8). Run by `make fuzz` before fuzzing.
set -uo pipefail
here=$(dirname "$0")
# shellcheck source=fuzz.sh
source "$here/fuzz.sh"
status=0
for f in "$here"/testdata/fuzz-output/*.txt; do
	name=$(basename "$f" .txt)
	budget=${name##*-}
	want=fail
	[[ $name == race-* ]] && want=race
	got=fail
	target=$(sed -n 's/^--- FAIL: \(Fuzz[A-Za-z0-9_]*\) .*/\1/p' "$f" | head -1)
	deadline_race "${target:-FuzzNetAndDrive}" "$budget" <"$f" && got=race
	if [ "$got" != "$want" ]; then
		echo "fuzz.sh: $f taken for a $got, want a $want"
		status=1
	fi
done
exit $status
