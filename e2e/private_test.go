package e2e

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"meshd/ctl"
	"meshd/rooms"
)

// privateHostConfig hosts an invite-only room and a passphrase room.
func privateHostConfig(passFile string) string {
	return `
[host]
member_rate = 0

[[room]]
name = "crew"
access = "invite"

[[room]]
name = "vault"
access = "passphrase"
passphrase_file = "` + passFile + `"
`
}

// TestPrivateRooms: an invite-only room refuses a stranger and admits the
// holder of an invite once, which keeps it admitted across a host restart;
// a passphrase room admits the member with the right passphrase file and
// refuses a wrong one; the host mutes a member, who still receives the
// room; and a reload of the host's file opens the invite-only room, which
// its announcement then says. (A kicked member decrypting nothing
// afterwards is TestKick.)
func TestPrivateRooms(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newLAN(t)
	h := l.addHost("host")
	guest, stranger, friend := l.addHost("guest"), l.addHost("stranger"), l.addHost("friend")

	passFile := filepath.Join(h.dir, "vault.pass")
	writeFile(t, passFile, "correct horse battery staple\n")
	hostCfg := privateHostConfig(passFile)
	h.start(hostCfg)
	for _, m := range []*host{guest, stranger, friend} {
		m.start("")
	}
	var st ctl.Status
	h.ctlJSON(&st, "status")
	crew, vault := "crew@"+st.Fingerprint, "vault@"+st.Fingerprint
	for _, m := range []*host{guest, stranger, friend} {
		eventually(t, 10*time.Second, m.name+" to list both rooms", func() bool {
			rs, err := m.client().Rooms(ctx)
			return err == nil && findRoom(rs, "crew") != nil && findRoom(rs, "vault") != nil
		})
	}
	var rs []ctl.Room
	stranger.ctlJSON(&rs, "rooms")
	if r := findRoom(rs, "crew"); r.Access != "invite" {
		t.Errorf("crew listed with access %q, want invite", r.Access)
	}
	if r := findRoom(rs, "vault"); r.Access != "passphrase" {
		t.Errorf("vault listed with access %q, want passphrase", r.Access)
	}

	// Invite-only: a stranger is refused and told what to do.
	expectRefused(t, stranger, "meshctl: join refused: room "+crew+" is invite-only: ask its host for an invite (meshctl invite)",
		"join", "crew")
	if n := counters(h)["access_denied"]; n != 1 {
		t.Errorf("host access_denied = %d, want 1", n)
	}

	// An invite admits once.
	invite := strings.TrimSpace(h.mustCtl("invite", "crew"))
	if !strings.HasPrefix(invite, crew+"/") {
		t.Fatalf("invite printed %q, want %s/TOKEN", invite, crew)
	}
	if out := guest.mustCtl("join", invite); !strings.Contains(out, "joined "+crew) {
		t.Errorf("guest's join printed %q", out)
	}
	expectRefused(t, stranger, "the invite is not valid for room "+crew+": it is unknown, used up or expired", "join", invite)
	// The host keeps the token's hash, not the token, and the key it
	// admitted, in a file only its user reads.
	accessFile := filepath.Join(h.dir, "state", "rooms", hex.EncodeToString(roomID(t, st.PublicKey, "crew"))+".access")
	fi, err := os.Stat(accessFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", accessFile, fi.Mode().Perm())
	}
	b, err := os.ReadFile(accessFile)
	if err != nil {
		t.Fatal(err)
	}
	_, token, _ := strings.Cut(invite, "/")
	var gst ctl.Status
	guest.ctlJSON(&gst, "status")
	if strings.Contains(string(b), token) || !strings.Contains(string(b), gst.PublicKey) {
		t.Errorf("%s holds the token or lacks the guest's key:\n%s", accessFile, b)
	}

	// Passphrase: the right file admits, a wrong one is refused.
	right, wrong := filepath.Join(friend.dir, "right.pass"), filepath.Join(stranger.dir, "wrong.pass")
	writeFile(t, right, "correct horse battery staple\n")
	writeFile(t, wrong, "incorrect horse\n")
	expectRefused(t, stranger, "room "+vault+" needs a passphrase", "join", "vault")
	expectRefused(t, stranger, "wrong passphrase for room "+vault, "join", "vault", "-passphrase-file", wrong)
	friend.mustCtl("join", "vault", "-passphrase-file", right)
	if n := counters(h)["access_denied"]; n != 4 {
		t.Errorf("host access_denied = %d, want 4", n)
	}
	friendTail := friend.tail("vault")
	res, err := friend.client().Say(ctx, "vault", ctl.SayRequest{Text: "in the vault"})
	if err != nil {
		t.Fatal(err)
	}
	friendTail.waitSeq(res.Seq, 10*time.Second)

	// The host restarts: the guest comes back to crew without an invite,
	// and the friend to the vault with the key its daemon kept.
	h.stop()
	h.start(hostCfg)
	for _, m := range []*host{guest, friend} {
		eventually(t, 30*time.Second, m.name+" to reconnect", func() bool {
			rs, err := m.client().Rooms(ctx)
			if err != nil {
				return false
			}
			r := findRoom(rs, map[*host]string{guest: "crew", friend: "vault"}[m])
			return r != nil && r.State == "connected"
		})
	}

	// Mute: the guest's lines are refused with a clear error, it still
	// receives the room, and unmuted it speaks again.
	guestTail := guest.tail("crew")
	h.mustCtl("mute", "crew", "guest")
	if out := h.mustCtl("who", "crew"); !strings.Contains(out, "member (muted)") {
		t.Errorf("who on the host does not show the guest muted:\n%s", out)
	}
	_, err = guest.ctl("say", "crew", "can anyone hear me")
	if err == nil || !strings.Contains(err.Error(), "the host of room "+crew+" has muted you") {
		t.Errorf("muted say: %v, want a refusal saying the guest is muted", err)
	}
	if n := counters(h)["says_muted"]; n != 1 {
		t.Errorf("host says_muted = %d, want 1", n)
	}
	res, err = h.client().Say(ctx, "crew", ctl.SayRequest{Text: "you are muted, guest"})
	if err != nil {
		t.Fatal(err)
	}
	evs := guestTail.waitSeq(res.Seq, 10*time.Second)
	if last := evs[len(evs)-1]; last.Text != "you are muted, guest" {
		t.Errorf("guest received %+v last, want the host's line", last)
	}
	h.mustCtl("unmute", "crew", "guest")
	guest.mustCtl("say", "crew", "thanks")

	// The host opens crew by a reload of its file: the stranger sees the
	// new access announced and joins.
	cfgPath := filepath.Join(h.dir, "meshd.toml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, cfgPath, strings.Replace(string(cfg), `access = "invite"`, `access = "open"`, 1))
	h.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "the stranger to see crew open", func() bool {
		rs, err := stranger.client().Rooms(ctx)
		r := findRoom(rs, "crew")
		return err == nil && r != nil && r.Access == ""
	})
	stranger.mustCtl("join", "crew")
}

// expectRefused runs meshctl on h and checks that it fails with want in
// its error.
func expectRefused(t *testing.T, h *host, want string, args ...string) {
	t.Helper()
	out, err := h.ctl(args...)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: meshctl %s: %v (stdout %q); want a refusal containing %q", h.name, strings.Join(args, " "), err, out, want)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// roomID is the id of room name hosted by the key in hex.
func roomID(t *testing.T, keyHex, name string) []byte {
	t.Helper()
	key, err := hex.DecodeString(keyHex)
	if err != nil {
		t.Fatal(err)
	}
	id := rooms.RoomID(key, name)
	return id[:]
}
