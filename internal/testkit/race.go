//go:build race

package testkit

// RaceEnabled reports whether the tests were built with -race.
const RaceEnabled = true

// slowdown scales Deadline under the race detector, which makes code 2-20
// times slower; on CI's two loaded cores a wait of a few seconds becomes
// tens of seconds.
const slowdown = 3
