package reconcile_test

import (
	"reflect"

	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/gitedge/gitedge/reconcile"
)

// The docs tests (docs_test.go) check docs/node-config.md against the node
// config's types; package reconcile cannot import nodeconfig (it imports
// reconcile), this external test package can.
func init() {
	reconcile.SetNodeConfigForDocs(reflect.TypeFor[nodeconfig.File](), func(where string, data []byte) error {
		_, err := nodeconfig.Parse(where, data)
		return err
	})
}
