package daemon

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"meshd/ctl"
	"meshd/ctl/ctlserver"
	"meshd/rooms"
	"meshd/rooms/wire"
)

// TestReloadLiveKeys changes nick, member.path and room_lifetime in a
// running daemon's file: each is applied, and reaches what reads it.
func TestReloadLiveKeys(t *testing.T) {
	cfg := testDaemonConfig(t)
	d := runDaemon(t, cfg)
	next := cfg
	next.Nick = "bob"
	next.Member.Path = "tcp"
	next.Discovery.Lifetime = Duration(3 * time.Hour)
	applied, restart, err := d.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`nick changed ("alice" → "bob")`,
		"discovery.room_lifetime changed (2h0m0s → 3h0m0s)",
		`member.path changed ("auto" → "tcp")`,
	}
	if !slices.Equal(applied, want) || len(restart) != 0 {
		t.Errorf("applied %q, restart %q; want %q and nothing to restart", applied, restart, want)
	}
	b := backend{d}
	if got := b.Status().Nick; got != "bob" {
		t.Errorf("status nick = %q, want bob", got)
	}
	if got := d.host.Nick(); got != "bob" {
		t.Errorf("hosted rooms' nick = %q, want bob", got)
	}
	who, err := b.Who("ops")
	if err != nil {
		t.Fatal(err)
	}
	if len(who.Members) != 1 || who.Members[0].Nick != "bob" {
		t.Errorf("ops members = %+v, want the host as bob", who.Members)
	}
	for _, pkt := range d.host.Announcements() {
		a, err := wire.ParseAnnounce(pkt)
		if err != nil {
			t.Fatal(err)
		}
		if a.Lifetime != 3*3600 {
			t.Errorf("announcement of %s lasts %ds, want %d", a.Room, a.Lifetime, 3*3600)
		}
	}
	if got := d.memberConfig().Path; got != "tcp" {
		t.Errorf("new memberships' path = %q, want tcp", got)
	}
}

// TestPrivateRoomsHosted hosts rooms of each access from the file and
// through the API, and issues invites.
func TestPrivateRoomsHosted(t *testing.T) {
	cfg := testDaemonConfig(t)
	pass := filepath.Join(t.TempDir(), "vault.pass")
	if err := os.WriteFile(pass, []byte("swordfish\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Rooms = []Room{
		{Name: "ops"},
		{Name: "crew", Access: "invite", Allow: []string{"abcdefgh"}},
		{Name: "vault", Access: "passphrase", PassphraseFile: pass},
	}
	d := runDaemon(t, cfg)
	b := backend{d}
	ctx := context.Background()
	access := make(map[string]string)
	for _, r := range b.Rooms() {
		access[r.Name] = r.Access
	}
	if want := map[string]string{"ops": "", "crew": "invite", "vault": "passphrase"}; !maps.Equal(access, want) {
		t.Errorf("rooms' access = %v, want %v", access, want)
	}

	inv, err := b.Invite(ctx, "crew", ctl.InviteRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if inv.Uses != 1 || time.Until(inv.Expires) < 23*time.Hour || !strings.HasPrefix(inv.Invite, "crew@"+d.ident.Fingerprint()+"/") {
		t.Errorf("invite = %+v, want one use for 24h", inv)
	}
	s := d.host.Room("crew")
	id := s.ID()
	store, err := d.openStore("crew", id)
	if err != nil {
		t.Fatal(err)
	}
	path := store.(*roomStore).accessPath
	store.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
	}
	saved, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, token, _ := strings.Cut(inv.Invite, "/")
	if strings.Contains(string(saved), token) || !strings.Contains(string(saved), `"sha256"`) {
		t.Errorf("%s holds the token, or no hash:\n%s", path, saved)
	}

	for _, c := range []struct {
		room string
		req  ctl.InviteRequest
		code int
	}{
		{"ops", ctl.InviteRequest{}, http.StatusBadRequest},
		{"vault", ctl.InviteRequest{}, http.StatusBadRequest},
		{"crew", ctl.InviteRequest{Uses: 1001}, http.StatusBadRequest},
		{"crew", ctl.InviteRequest{Expires: ctl.Duration(367 * 24 * time.Hour)}, http.StatusBadRequest},
		{"nowhere", ctl.InviteRequest{}, http.StatusNotFound},
	} {
		if _, err := b.Invite(ctx, c.room, c.req); statusOf(err) != c.code {
			t.Errorf("invite to %s with %+v: %v, want status %d", c.room, c.req, err, c.code)
		}
	}
	if err := b.Mute(ctx, "crew", "nobody", true); statusOf(err) != http.StatusNotFound {
		t.Errorf("mute of nobody: %v, want 404", err)
	}

	// Through the API.
	if _, err := b.Host(ctx, ctl.HostRequest{Name: "secret", Access: "passphrase"}); statusOf(err) != http.StatusBadRequest {
		t.Errorf("passphrase room without a passphrase: %v, want 400", err)
	}
	if _, err := b.Host(ctx, ctl.HostRequest{Name: "club", Access: "open", Allow: []string{"abcdefgh"}}); statusOf(err) != http.StatusBadRequest {
		t.Errorf("open room with an allowlist: %v, want 400", err)
	}
	r, err := b.Host(ctx, ctl.HostRequest{Name: "club", Access: "invite", Allow: []string{strings.Repeat("ab", 32)}})
	if err != nil || r.Access != "invite" {
		t.Errorf("invite-only room through the API: %+v, %v", r, err)
	}

	// A room added by a reload whose passphrase file is missing is not
	// hosted, and the reload says why.
	next := cfg
	next.Rooms = append(slices.Clone(cfg.Rooms), Room{Name: "late", Access: "passphrase", PassphraseFile: filepath.Join(t.TempDir(), "none")})
	_, restart, err := d.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if len(restart) != 1 || !strings.Contains(restart[0], `room "late" added but cannot be hosted (passphrase: open`) {
		t.Errorf("restart = %q, want the late room's missing passphrase file", restart)
	}
	// A hosted room's access changes live, for joins from then on, and is
	// announced under a new serial.
	serial := func(name string) uint64 {
		for _, pkt := range d.host.Announcements() {
			if a, err := wire.ParseAnnounce(pkt); err == nil && a.Room == name {
				return a.Serial
			}
		}
		t.Fatalf("%s is not announced", name)
		return 0
	}
	before := serial("ops")
	next = cfg
	next.Rooms = slices.Clone(cfg.Rooms)
	next.Rooms[0].Access = "invite"
	next.Rooms[2].PassphraseFile = filepath.Join(t.TempDir(), "none")
	applied, restart, err := d.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{`room "ops" access changed; now invite, for joins from now on`}; !slices.Equal(applied, want) {
		t.Errorf("applied = %q, want %q", applied, want)
	}
	if len(restart) != 1 || !strings.Contains(restart[0], `room "vault" access changed but cannot be applied (passphrase: open`) {
		t.Errorf("restart = %q, want the vault's missing passphrase file", restart)
	}
	if got := d.host.Room("ops").Access(); got != rooms.AccessInvite {
		t.Errorf("ops access = %v after the reload, want invite", got)
	}
	if got := d.host.Room("vault").Access(); got != rooms.AccessPassphrase {
		t.Errorf("vault access = %v after a failed reload, want passphrase", got)
	}
	if after := serial("ops"); after <= before {
		t.Errorf("ops announced under serial %d after its access changed, %d before; want a higher one", after, before)
	}
	// A new allowlist keeps the invites issued before.
	next.Rooms[1].Allow = nil
	next.Rooms[2].PassphraseFile = pass
	if _, _, err := d.Reload(next); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Invite(ctx, "crew", ctl.InviteRequest{}); err != nil {
		t.Errorf("invite after a reload: %v", err)
	}
	if saved, err := os.ReadFile(path); err != nil || strings.Count(string(saved), `"sha256"`) != 2 {
		t.Errorf("%s after a reload and a second invite: %v\n%s; want both invites", path, err, saved)
	}
}

func TestReadPassphrase(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		content, want string
	}{
		{"one line\n", "one line"},
		{"crlf\r\nsecond\n", "crlf"},
		{"no newline", "no newline"},
		{"\nsecond", ""},
		{strings.Repeat("x", maxPassphrase+1), ""},
	} {
		path := filepath.Join(dir, "p")
		if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ReadPassphrase(path)
		if string(got) != c.want || (err == nil) != (c.want != "") {
			t.Errorf("ReadPassphrase(%q) = %q, %v; want %q", c.content, got, err, c.want)
		}
	}
}

func statusOf(err error) int {
	var e *ctlserver.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}
