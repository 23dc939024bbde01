package forge

import "github.com/gitedge/gitedge/internal/deliver"

// Summarize turns an error into a status description: the first error only
// (the one a reviewer fixes first), prefixed with the count when there are
// several, as "3 errors, first: routes/blog.yaml:12: Route \"blog\":
// spec.http.backend: no Backend named \"web\"". An error that unwraps to a
// list (errors.Join, reconcile.Errors), even behind fmt.Errorf's %w, is
// walked depth-first to its first leaf; any other error gives its text.
// The Reporter makes the result one line and cuts it to the forge's limit;
// the count comes first so it is never the part that is lost.
func Summarize(err error) string { return deliver.Summarize(err) }
