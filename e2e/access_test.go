package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"meshd/ctl"
)

// TestAccess checks who may drive meshd through its control socket, with
// real users: root may do everything, as may a user who is in the socket
// group (socket_group) as a supplementary member; a user in neither cannot
// even connect with the default modes, and once an operator makes the
// socket world-accessible may read the status but not change anything.
func TestAccess(t *testing.T) {
	requireE2E(t)
	for _, tool := range []string{"useradd", "userdel", "groupadd", "groupdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("TestAccess needs %s (shadow-utils) to make test users", tool)
		}
	}
	removeStaleAccounts()
	pid := os.Getpid()
	group := fmt.Sprintf("mde2e-g-%d", pid)
	gid := addGroup(t, group)
	op := addUser(t, fmt.Sprintf("mde2e-op-%d", pid), group)
	stranger := addUser(t, fmt.Sprintf("mde2e-x-%d", pid))

	// The test users must reach meshctl and the socket's directory: both
	// live under a world-searchable directory of their own.
	pub := publicDir(t)
	meshctl := filepath.Join(pub, "meshctl")
	copyFile(t, bins.meshctl, meshctl, 0o755)

	l := newLAN(t)
	h := l.addHost("a")
	// meshd creates the socket's directory (0750, socket group) itself.
	h.socket = filepath.Join(pub, "run", "meshd.sock")
	h.startWithGroup(group)

	runDir := filepath.Dir(h.socket)
	for path, want := range map[string]os.FileMode{runDir: 0o750, h.socket: 0o660} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != want || st.Gid != gid {
			t.Errorf("%s: mode %v gid %d, want %v gid %d", path, fi.Mode().Perm(), st.Gid, want, gid)
		}
	}

	as := func(who *account, args ...string) ctlRun {
		t.Helper()
		return runCtlAs(t, meshctl, h.socket, who, args...)
	}
	var root *account // this process: root

	// Root may do everything.
	as(root, "status").expect(t, 0, "")
	if r := as(root, "host", "general"); r.code != 0 || !strings.HasPrefix(r.stdout, "hosting general@") {
		t.Fatalf("root: host: %s", r)
	}

	// So may a member of the socket group.
	as(&op, "rooms").expect(t, 0, "")
	if r := as(&op, "host", "ops"); r.code != 0 || !strings.HasPrefix(r.stdout, "hosting ops@") {
		t.Fatalf("operator: host: %s", r)
	}
	as(&op, "say", "general", "hello from the operator").expect(t, 0, "")

	// Anyone else cannot connect while the modes are the defaults.
	as(&stranger, "status").expect(t, 1, "permission denied; run as root or as a member of the socket's group")

	// An operator opens the socket to everybody: the peer check is all
	// that stands between a stranger and the daemon now.
	if err := os.Chmod(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(h.socket, 0o666); err != nil {
		t.Fatal(err)
	}
	if r := as(&stranger, "status"); r.code != 0 || !strings.Contains(r.stdout, "2 hosted") {
		t.Errorf("stranger: status: %s, want it to work and show 2 hosted rooms", r)
	}
	if r := as(&stranger, "stats"); r.code != 0 || !strings.Contains(r.stdout, "\nMemory\n") {
		t.Errorf("stranger: stats: %s, want it to work and show the memory", r)
	}
	denied := fmt.Sprintf("meshctl: permission denied: POST /v0/rooms/host needs root or membership of group %q; ask an operator to add you (usermod -aG %s %s)\n",
		group, group, stranger.name)
	if r := as(&stranger, "host", "mine"); r.code != 1 || r.stderr != denied {
		t.Errorf("stranger: host: %s\nwant exit 1 and stderr %q", r, denied)
	}
	as(&stranger, "rooms").expect(t, 1, "meshctl: permission denied: GET /v0/rooms needs root")
	as(&stranger, "say", "general", "hi").expect(t, 1, "meshctl: permission denied: POST /v0/rooms/general/say needs root")
	as(&stranger, "tail", "general", "-n").expect(t, 1, "meshctl: permission denied: GET /v0/events needs root")
	// The operator is unaffected, and nothing the stranger tried happened.
	as(&op, "who", "general").expect(t, 0, "")
	var st ctl.Status
	h.ctlJSON(&st, "status")
	if st.Hosted != 2 {
		t.Errorf("hosted rooms = %d, want 2 (general and ops)", st.Hosted)
	}

	// The metrics are what a monitoring user reads.
	metrics := getMetrics(t, h.socket)
	for _, want := range []string{"meshd_rooms{kind=\"hosted\"} 2\n", "# TYPE meshd_go_heap_bytes gauge\n", "# TYPE meshd_packets_sent_total counter\n"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
}

// account is a local user made for a test.
type account struct {
	name     string
	uid, gid uint32
	groups   []uint32 // supplementary
}

func (a *account) String() string {
	if a == nil {
		return "root"
	}
	return a.name
}

// removeStaleAccounts deletes the users and groups of earlier runs whose
// process is gone (killed before its cleanup ran). Names end in the pid of
// the run that made them.
func removeStaleAccounts() {
	for _, db := range []struct{ file, del string }{{"/etc/passwd", "userdel"}, {"/etc/group", "groupdel"}} {
		b, err := os.ReadFile(db.file)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			name, _, _ := strings.Cut(line, ":")
			if !strings.HasPrefix(name, "mde2e-") {
				continue
			}
			pid, err := strconv.Atoi(name[strings.LastIndexByte(name, '-')+1:])
			if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
				continue
			}
			exec.Command(db.del, name).Run()
		}
	}
}

func addGroup(t *testing.T, name string) uint32 {
	t.Helper()
	if out, err := exec.Command("groupadd", name).CombinedOutput(); err != nil {
		t.Fatalf("groupadd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("groupdel", name).Run() })
	g, err := user.LookupGroup(name)
	if err != nil {
		t.Fatal(err)
	}
	gid, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(gid)
}

// addUser makes a user with a group of its own as primary group, and the
// given supplementary groups.
func addUser(t *testing.T, name string, groups ...string) account {
	t.Helper()
	args := []string{"-M", "-U", "-d", "/nonexistent", "-s", "/usr/sbin/nologin"}
	if len(groups) > 0 {
		args = append(args, "-G", strings.Join(groups, ","))
	}
	if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		exec.Command("userdel", name).Run()
		exec.Command("groupdel", name).Run() // its own group, if userdel left it
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	a := account{name: name, uid: uint32(uid), gid: uint32(gid)}
	for _, g := range groups {
		grp, err := user.LookupGroup(g)
		if err != nil {
			t.Fatal(err)
		}
		id, err := strconv.ParseUint(grp.Gid, 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		a.groups = append(a.groups, uint32(id))
	}
	return a
}

// publicDir makes a directory every user can reach, removed at cleanup.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "meshd-e2e-access")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			t.Skipf("%s is not searchable by other users, so test users cannot reach %s: set TMPDIR to a directory they can reach", d, dir)
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	return dir
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// ctlRun is the outcome of one meshctl run.
type ctlRun struct {
	who            string
	args           []string
	code           int
	stdout, stderr string
}

func (r ctlRun) String() string {
	return fmt.Sprintf("meshctl %s as %s: exit %d, stdout %q, stderr %q", strings.Join(r.args, " "), r.who, r.code, r.stdout, r.stderr)
}

// expect checks the exit code and that stderr contains want.
func (r ctlRun) expect(t *testing.T, code int, want string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stderr, want) {
		t.Errorf("%s\nwant exit %d and stderr containing %q", r, code, want)
	}
}

// runCtlAs runs meshctl as who (nil: as this process, root).
func runCtlAs(t *testing.T, meshctl, socket string, who *account, args ...string) ctlRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, meshctl, append([]string{"-socket", socket}, args...)...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	if who != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: who.uid, Gid: who.gid, Groups: who.groups}}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r := ctlRun{who: who.String(), args: args}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("meshctl %v as %s: %v", args, who, err)
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

// startWithGroup starts meshd on h with socket_group set, and its history
// outside the socket's directory, whose permissions the test checks.
func (h *host) startWithGroup(group string) {
	h.t.Helper()
	h.startTOML(fmt.Sprintf("socket_group = %q\n", group),
		fmt.Sprintf("\n[host]\nhistory_dir = %q\n", filepath.Join(h.dir, "history")))
}

// getMetrics reads GET /v0/metrics as root.
func getMetrics(t *testing.T, socket string) string {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + ctl.Host + "/v0/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/plain; version=0.0.4" {
		t.Fatalf("GET /v0/metrics: %s, Content-Type %q: %s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	return string(b)
}
