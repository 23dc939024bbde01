//go:build !race

package netpollorder

const raceOn = false
