//go:build race

package netpollorder

// raceOn: the race detector randomises the scheduler's run queue.
const raceOn = true
