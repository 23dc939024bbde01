// Package report holds what gitedge import tells its user: the located
// items it could not carry over, changed on the way, or noted, and the
// located errors that stop an import. The parsers of the importer's
// sub-packages and the importer itself share these types.
package report
