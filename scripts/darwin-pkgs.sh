#!/bin/sh
# darwin-pkgs.sh lists the packages whose code and tests build for macOS
# today: every package except those that need the dataplane, whose
# Linux-only files (splice, socket options) are not split out yet. `make
# lint` builds and vets them with GOOS=darwin, so validate and plan keep
# building on a reviewer's laptop; once the dataplane is split, this list
# is ./... and cmd/gitedge with it.
set -eu
GO=${GO:-go}
$GO list -test -f '{{.ImportPath}}|{{join .Deps " "}}' ./... |
	awk -F'|' '{
		p = $1; sub(/ \[.*/, "", p); sub(/\.test$/, "", p); sub(/_test$/, "", p)
		all[p] = 1
		if ($2 ~ /gitedge\/dataplane( |$)/ || p ~ /gitedge\/dataplane/) bad[p] = 1
	}
	END { for (p in all) if (!(p in bad)) print p }' | sort
