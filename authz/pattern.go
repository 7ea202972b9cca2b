package authz

import (
	"errors"
	"fmt"
	"strings"
)

// pattern is a compiled path pattern. Segments are separated by "/", empty segments are ignored on both sides.
// A segment is a literal, "*" (any one segment), "{name}" (any one segment, captured as name), a glob with one
// "*" inside ("zitadel.*", "*.svc"), or "**" (any number of segments, at most once per pattern). Matching never
// allocates.
type pattern struct {
	raw      string
	prefix   []segment // before "**"
	suffix   []segment // after "**"
	rest     bool      // the pattern has "**"
	fold     bool      // case-insensitive literals
	captures []string  // capture names, by index
}

type segKind uint8

const (
	segLiteral segKind = iota
	segAny
	segCapture
	segGlob
)

type segment struct {
	kind   segKind
	lit    string // literal, or the glob's prefix
	suffix string // the glob's suffix
	idx    int    // capture index
}

// maxCaptures bounds the captures of one pattern so a match fits in a fixed array.
const maxCaptures = 8

type match struct {
	caps [maxCaptures]string
}

func compilePattern(raw string, fold bool) (pattern, error) {
	p := pattern{raw: raw, fold: fold}
	if raw == "" || raw[0] != '/' {
		return p, errors.New(`must start with "/"`)
	}
	cur := &p.prefix
	for s := range strings.SplitSeq(raw, "/") {
		if s == "" {
			continue
		}
		var seg segment
		switch {
		case s == "**":
			if p.rest {
				return p, errors.New(`"**" may appear only once`)
			}
			p.rest = true
			cur = &p.suffix
			continue
		case s == "*":
			seg.kind = segAny
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			name := s[1 : len(s)-1]
			if name == "" || strings.ContainsAny(name, "{}*") {
				return p, fmt.Errorf("bad capture %q", s)
			}
			for _, c := range p.captures {
				if c == name {
					return p, fmt.Errorf("capture {%s} appears twice", name)
				}
			}
			if len(p.captures) == maxCaptures {
				return p, fmt.Errorf("more than %d captures", maxCaptures)
			}
			seg.kind, seg.idx = segCapture, len(p.captures)
			p.captures = append(p.captures, name)
		case strings.ContainsAny(s, "{}"):
			return p, fmt.Errorf("segment %q: a capture must be a whole segment", s)
		case strings.Contains(s, "*"):
			pre, suf, _ := strings.Cut(s, "*")
			if strings.Contains(suf, "*") {
				return p, fmt.Errorf("segment %q: at most one \"*\" inside a segment", s)
			}
			seg.kind, seg.lit, seg.suffix = segGlob, pre, suf
		default:
			seg.kind, seg.lit = segLiteral, s
		}
		*cur = append(*cur, seg)
	}
	return p, nil
}

func (p *pattern) capture(name string) int {
	for i, c := range p.captures {
		if c == name {
			return i
		}
	}
	return -1
}

func (p *pattern) eq(a, b string) bool {
	if p.fold {
		return strings.EqualFold(a, b)
	}
	return a == b
}

func (p *pattern) segMatch(seg *segment, s string, m *match) bool {
	switch seg.kind {
	case segLiteral:
		return p.eq(seg.lit, s)
	case segAny:
		return true
	case segCapture:
		m.caps[seg.idx] = s
		return true
	case segGlob:
		return len(s) >= len(seg.lit)+len(seg.suffix) &&
			p.eq(s[:len(seg.lit)], seg.lit) && p.eq(s[len(s)-len(seg.suffix):], seg.suffix)
	}
	return false
}

// match reports whether path matches, filling m's captures.
func (p *pattern) match(path string, m *match) bool {
	return p.matchFirst(path, firstSegmentOf(path), m)
}

// firstSegment is the first segment of a path (nextSegment from 0), found once for every pattern the path is
// matched against: most patterns of a route table differ in it, so most are rejected on it alone.
type firstSegment struct {
	s    string
	next int
	ok   bool
}

func firstSegmentOf(path string) firstSegment {
	s, next, ok := nextSegment(path, 0)
	return firstSegment{s, next, ok}
}

// matchFirst is match with path's first segment already found.
func (p *pattern) matchFirst(path string, first firstSegment, m *match) bool {
	// Prefix segments from the front.
	i := 0 // byte position in path
	for k := range p.prefix {
		s, next, ok := first.s, first.next, first.ok
		if k > 0 {
			s, next, ok = nextSegment(path, i)
		}
		if !ok || !p.segMatch(&p.prefix[k], s, m) {
			return false
		}
		i = next
	}
	if !p.rest {
		if len(p.prefix) == 0 {
			return !first.ok
		}
		_, _, more := nextSegment(path, i)
		return !more
	}
	// Suffix segments from the back, not overlapping the prefix.
	j := len(path)
	for k := len(p.suffix) - 1; k >= 0; k-- {
		s, prev, ok := prevSegment(path, j)
		if !ok || prev < i || !p.segMatch(&p.suffix[k], s, m) {
			return false
		}
		j = prev
	}
	return true
}

// nextSegment returns the segment starting at or after i and the position after it.
func nextSegment(path string, i int) (string, int, bool) {
	for i < len(path) && path[i] == '/' {
		i++
	}
	if i >= len(path) {
		return "", i, false
	}
	end := strings.IndexByte(path[i:], '/')
	if end < 0 {
		return path[i:], len(path), true
	}
	return path[i : i+end], i + end, true
}

// prevSegment returns the segment ending at or before j and its start position.
func prevSegment(path string, j int) (string, int, bool) {
	for j > 0 && path[j-1] == '/' {
		j--
	}
	if j <= 0 {
		return "", 0, false
	}
	start := strings.LastIndexByte(path[:j], '/') + 1
	return path[start:j], start, true
}
