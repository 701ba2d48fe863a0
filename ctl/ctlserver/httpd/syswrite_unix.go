//go:build unix && !linux

package httpd

import "syscall"

// sysWrite is write(2); a test makes it take part of a chunk.
var sysWrite = syscall.Write
