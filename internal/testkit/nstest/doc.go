// Package nstest holds what the tests that need Linux network namespaces
// share: running a test in a namespace of its own, named namespaces made
// for a lab and deleted when the test ends, whatever happens, and
// commands run in them. Names carry the test process's pid, so tests run
// at the same time on one machine never collide. Linux only; only tests
// import it.
package nstest
