package source

import "unicode/utf8"

// MaxListed and MaxName are the bounds state.ApplyMirror sets on one mirrored record: entries of each list
// (an app's client IDs, an org's domains) and bytes of its name. A source trims to them before writing, so an
// upstream object with more is mirrored with what fits instead of being refused.
const (
	MaxListed = 100
	MaxName   = 200
)

// ClipName shortens a display name to MaxName bytes, on a rune boundary.
func ClipName(name string) string {
	if len(name) <= MaxName {
		return name
	}
	cut := MaxName
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return name[:cut]
}
