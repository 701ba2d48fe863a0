package poller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// epoll is one epoll instance holding every entry's descriptor, one-shot
// and level-triggered: an event disarms the descriptor, so that one
// reader at a time owns it, and re-arming it (Park) reports input that is
// already there. Its own descriptor is non-blocking and in the runtime's
// poller, through an os.File: Run waits for events as any read waits,
// without a thread blocked in epoll_wait, and stops when its deadline is
// set.
type epoll struct {
	f      *os.File
	rc     syscall.RawConn
	fd     int
	events [64]unix.EpollEvent
	n      int
	err    error
	wait   func(fd uintptr) bool // made once: see Entry.peek
}

const armed = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func newEpoll() (*epoll, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("epoll: %w", err)
	}
	ep := &epoll{f: os.NewFile(uintptr(fd), "epoll"), fd: fd}
	if ep.rc, err = ep.f.SyscallConn(); err != nil {
		ep.f.Close()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	ep.wait = func(fd uintptr) bool {
		ep.n, ep.err = unix.EpollWait(int(fd), ep.events[:], 0)
		return ep.n > 0 || ep.err != nil && ep.err != unix.EINTR
	}
	return ep, nil
}

func (ep *epoll) run(ctx context.Context, fire func(id uint64)) error {
	stop := context.AfterFunc(ctx, func() { ep.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		if err := ep.rc.Read(ep.wait); err != nil {
			if ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return fmt.Errorf("epoll: %w", err)
		}
		if ep.err != nil {
			return fmt.Errorf("epoll_wait: %w", ep.err)
		}
		for _, ev := range ep.events[:ep.n] {
			fire(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32)
		}
	}
}

func event(id uint64) *unix.EpollEvent {
	return &unix.EpollEvent{Events: armed, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
}

// add registers fd, armed at once: an event before the first Park finds
// the entry running and is dropped, and Park re-arms it.
func (ep *epoll) add(fd int, id uint64) error {
	return os.NewSyscallError("epoll_ctl", unix.EpollCtl(ep.fd, unix.EPOLL_CTL_ADD, fd, event(id)))
}

func (ep *epoll) arm(fd int, id uint64) error {
	return os.NewSyscallError("epoll_ctl", unix.EpollCtl(ep.fd, unix.EPOLL_CTL_MOD, fd, event(id)))
}

func (ep *epoll) remove(fd int) {
	unix.EpollCtl(ep.fd, unix.EPOLL_CTL_DEL, fd, nil)
}

func (ep *epoll) close() error { return ep.f.Close() }
