//go:build race

package node

// raceEnabled reports a build with the race detector, whose sync.Pool
// drops a random share of what is put back, so that allocation counts say
// little about a server's memory.
const raceEnabled = true
