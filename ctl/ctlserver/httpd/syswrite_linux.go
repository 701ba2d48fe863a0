package httpd

import (
	"syscall"
	"unsafe"
)

// sysWrite is write(2) as a raw system call, which does not enter the
// scheduler's system-call state: the socket is non-blocking, so the call
// cannot block, and an ordinary call after an idle spell wakes the
// runtime's monitor thread (sysmon), a context switch or two on every
// line a router member delivers at 100 lines a second (docs/BENCHMARKS.md,
// "The data path writes its events"). A test makes it take part of
// a chunk.
var sysWrite = func(fd int, p []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
