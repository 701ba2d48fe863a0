package rooms

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"meshd/rooms/wire"
)

// ValidateName reports why name cannot be a room name, or nil if it can.
// Names are what people type, so they stay printable, and '@' is kept for
// the name@fingerprint form that tells two same-named rooms apart.
func ValidateName(name string) error {
	switch {
	case name == "":
		return errors.New("room name is empty")
	case len(name) > wire.MaxRoomName:
		return fmt.Errorf("room name is %d bytes long; the limit is %d", len(name), wire.MaxRoomName)
	case !utf8.ValidString(name):
		return errors.New("room name is not valid UTF-8")
	}
	for _, r := range name {
		if r == '@' || r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("room name %q contains %q; use letters, digits and punctuation other than '@' and '/'", name, r)
		}
	}
	return nil
}

// ValidateNick reports why nick cannot be a member's nick, or nil if it can.
func ValidateNick(nick string) error {
	switch {
	case nick == "":
		return errors.New("nick is empty")
	case len(nick) > wire.MaxNick:
		return fmt.Errorf("nick is %d bytes long; the limit is %d", len(nick), wire.MaxNick)
	case !utf8.ValidString(nick):
		return errors.New("nick is not valid UTF-8")
	}
	for _, r := range nick {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("nick %q contains %q; use letters, digits and punctuation", nick, r)
		}
	}
	return nil
}
