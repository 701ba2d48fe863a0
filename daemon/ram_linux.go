package daemon

import "syscall"

// totalRAM is the machine's RAM, as the kernel reports it.
func totalRAM() (uint64, bool) {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return 0, false
	}
	return uint64(si.Totalram) * uint64(si.Unit), true
}
