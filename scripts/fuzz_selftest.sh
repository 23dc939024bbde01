#!/usr/bin/env bash
# fuzz_selftest.sh: checks fuzz.sh's deadline_race against the outputs in
# testdata/fuzz-output/: race-FUZZTIME.txt must be taken for Go 1.26's fuzz
# deadline race, fail-*-FUZZTIME.txt (findings, hangs, early or mixed
# failures) must fail the build. Run by `make fuzz` before fuzzing.
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
	deadline_race FuzzNetAndDrive "$budget" <"$f" && got=race
	if [ "$got" != "$want" ]; then
		echo "fuzz.sh: $f taken for a $got, want a $want"
		status=1
	fi
done
exit $status
