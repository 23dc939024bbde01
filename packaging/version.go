package packaging

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	// describeSuffix is what `git describe` appends after a tag: commits
	// since the tag and the abbreviated commit id.
	describeSuffix = regexp.MustCompile(`-([0-9]+)-g([0-9a-f]{4,40})$`)
	// bareCommit is `git describe --always` output when no tag is reachable.
	bareCommit = regexp.MustCompile(`^[0-9a-f]{7,40}$`)
	// debianUpstream is what a Debian upstream version may hold when it
	// has no Debian revision (so no hyphen), starting with a digit.
	debianUpstream = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
)

// DebianVersion turns the Makefile's VERSION (`git describe --tags
// --always --dirty`, optionally with a leading v) into a Debian version
// that sorts the way releases do:
//
//	v1.2.3                    1.2.3
//	v1.2.3-rc.1               1.2.3~rc.1          (before 1.2.3)
//	v1.2.3-4-gdeadbee         1.2.3+4.gdeadbee    (after 1.2.3, before 1.2.4)
//	v1.2.3-4-gdeadbee-dirty   1.2.3+4.gdeadbee.dirty
//	deadbee (no tag yet)      0.0.0+gdeadbee      (7 or more hex digits, no v)
//	dev                       0.0.0+dev
//
// A version it cannot map is an error rather than a package dpkg refuses.
func DebianVersion(v string) (string, error) {
	in := v
	v = strings.TrimPrefix(v, "v")
	var local []string // after "+": build metadata, describe suffix, dirty
	dirty := strings.HasSuffix(v, "-dirty")
	v = strings.TrimSuffix(v, "-dirty")
	if m := describeSuffix.FindStringSubmatch(v); m != nil {
		local = append(local, m[1], "g"+m[2])
		v = strings.TrimSuffix(v, m[0])
	}
	switch {
	case v == "dev":
		v, local = "0.0.0", append([]string{"dev"}, local...)
	case !strings.HasPrefix(in, "v") && bareCommit.MatchString(v):
		v, local = "0.0.0", append([]string{"g" + v}, local...)
	}
	if base, meta, ok := strings.Cut(v, "+"); ok {
		v, local = base, append([]string{meta}, local...)
	}
	// A hyphen left in the tag starts a pre-release (semver), which sorts
	// before the release: "~" in Debian.
	if base, pre, ok := strings.Cut(v, "-"); ok {
		v = base + "~" + strings.ReplaceAll(pre, "-", ".")
	}
	if dirty {
		local = append(local, "dirty")
	}
	if len(local) > 0 {
		v += "+" + strings.Join(local, ".")
	}
	if !debianUpstream.MatchString(v) {
		return "", fmt.Errorf("version %q: cannot make a Debian version of it (got %q): tag releases as v1.2.3 or v1.2.3-rc.1", in, v)
	}
	return v, nil
}

// ArchiveVersion is the version in the archives' names: VERSION without
// a leading v, as goreleaser names them.
func ArchiveVersion(v string) string { return strings.TrimPrefix(v, "v") }
