// Package daemon wires meshd together: it loads the configuration, keeps
// the identity and counters in the state directory, opens the sockets,
// runs the read loops that carry packets from mcast to rooms, and serves
// the control API. It owns every long-lived goroutine and stops them all,
// in order, when its context ends.
package daemon
