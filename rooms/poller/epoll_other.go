//go:build !linux

package poller

import (
	"context"
	"errors"
)

// epoll is linux's; elsewhere each parked entry waits on a goroutine.
type epoll struct{}

func newEpoll() (*epoll, error) { return nil, errors.ErrUnsupported }

func (*epoll) run(context.Context, func(uint64)) error { panic("unreachable") }
func (*epoll) add(int, uint64) error                   { panic("unreachable") }
func (*epoll) arm(int, uint64) error                   { panic("unreachable") }
func (*epoll) remove(int)                              {}
func (*epoll) close() error                            { return nil }
