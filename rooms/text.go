package rooms

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"meshd/rooms/wire"
)

// ValidateText reports why text cannot be said in a room, or nil if it can.
// Control characters other than newline and tab are refused so that no
// line can drive a member's terminal.
func ValidateText(text string) error {
	switch {
	case text == "":
		return errors.New("message is empty")
	case len(text) > wire.MaxText:
		return fmt.Errorf("message is %d bytes long; the limit is %d bytes", len(text), wire.MaxText)
	case !utf8.ValidString(text):
		return errors.New("message is not valid UTF-8")
	}
	for _, r := range text {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return fmt.Errorf("message contains control character %U", r)
		}
	}
	return nil
}
