package state

import "strings"

// A list decodes every record, and encoding/json costs about 250 bytes of garbage and a microsecond a record
// even for the few fields a snapshot keeps: at a million records, most of a list's CPU after the GC and a
// quarter of its garbage. decodeFast reads the records deact writes itself (flat objects of plain ASCII strings,
// booleans, lists of strings) without it, and hands anything else back to encoding/json.

// fastField is one member decodeFast reads: exactly one of str, raw, flag and list is set. raw is a string
// member read as str would be, left as the bytes of b that hold it (valid as long as b is), for a caller that
// keeps a string it already has rather than a copy of it.
type fastField struct {
	name string
	str  *string
	raw  *[]byte
	flag *bool
	list *[]string
}

// decodeFast decodes the JSON object b into fields the way encoding/json.Unmarshal decodes it into a struct
// with exactly these fields, and reports true; or, when b holds anything it does not decode exactly as
// encoding/json would, reports false having set nothing the caller keeps (the caller then uses
// encoding/json, which also reports the errors). It refuses: escapes, control characters and non-ASCII bytes
// in names and in the values it keeps, numbers, null, objects and lists nested deeper than an ignored member's
// one level of plain strings and literals, a member whose name matches a field's only when case is ignored,
// a value of the wrong type, and invalid or trailing input.
func decodeFast(b []byte, fields []fastField) bool {
	p := fastParser{b: b}
	if !p.consume('{') {
		return false
	}
	if p.consume('}') {
		return p.end()
	}
	for {
		name, ok := p.plainString(true)
		if !ok || !p.consume(':') {
			return false
		}
		f, refuse := fieldNamed(fields, name)
		switch {
		case refuse:
			return false
		case f == nil:
			if !p.skipValue(1) {
				return false
			}
		case f.str != nil:
			s, ok := p.plainString(true)
			if !ok {
				return false
			}
			*f.str = keptString(s)
		case f.raw != nil:
			s, ok := p.plainString(true)
			if !ok {
				return false
			}
			*f.raw = s
		case f.flag != nil:
			v, ok := p.boolean()
			if !ok {
				return false
			}
			*f.flag = v
		case f.list != nil:
			l, ok := p.stringList()
			if !ok {
				return false
			}
			*f.list = l
		}
		if p.consume(',') {
			continue
		}
		return p.consume('}') && p.end()
	}
}

// fieldNamed is the field named name, nil when none is; refuse when name differs from a field's in case only
// (encoding/json would decode it into that field).
func fieldNamed(fields []fastField, name []byte) (f *fastField, refuse bool) {
	for i := range fields {
		if string(name) == fields[i].name {
			return &fields[i], false
		}
	}
	for i := range fields {
		if strings.EqualFold(string(name), fields[i].name) {
			return nil, true
		}
	}
	return nil, false
}

type fastParser struct {
	b []byte
	i int
}

func (p *fastParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// consume skips white space and the byte c, reporting whether c was there.
func (p *fastParser) consume(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (p *fastParser) end() bool {
	p.space()
	return p.i == len(p.b)
}

// plainString reads a string without escapes or control characters; with ascii, of printable ASCII only.
func (p *fastParser) plainString(ascii bool) ([]byte, bool) {
	if !p.consume('"') {
		return nil, false
	}
	start := p.i
	for ; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, true
		case c == '\\' || c < 0x20 || ascii && c > 0x7e:
			return nil, false
		}
	}
	return nil, false
}

func (p *fastParser) boolean() (bool, bool) {
	p.space()
	rest := p.b[p.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		p.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		p.i += 5
		return false, true
	}
	return false, false
}

// stringList reads a list of plain ASCII strings; [] is an empty list, not nil, as encoding/json makes it.
func (p *fastParser) stringList() ([]string, bool) {
	if !p.consume('[') {
		return nil, false
	}
	l := []string{}
	if p.consume(']') {
		return l, true
	}
	for {
		s, ok := p.plainString(true)
		if !ok {
			return nil, false
		}
		l = append(l, string(s))
		if p.consume(',') {
			continue
		}
		if p.consume(']') {
			return l, true
		}
		return nil, false
	}
}

// skipValue skips a value no field takes: a string (any bytes but escapes and control characters, which
// encoding/json would accept as well), true, false, or, at depth 1, a list or object of those.
func (p *fastParser) skipValue(depth int) bool {
	p.space()
	if p.i == len(p.b) {
		return false
	}
	switch p.b[p.i] {
	case '"':
		_, ok := p.plainString(false)
		return ok
	case 't', 'f':
		_, ok := p.boolean()
		return ok
	case '[':
		if depth > 1 {
			return false
		}
		p.i++
		if p.consume(']') {
			return true
		}
		for {
			if !p.skipValue(depth + 1) {
				return false
			}
			if p.consume(',') {
				continue
			}
			return p.consume(']')
		}
	case '{':
		if depth > 1 {
			return false
		}
		p.i++
		if p.consume('}') {
			return true
		}
		for {
			if _, ok := p.plainString(false); !ok || !p.consume(':') || !p.skipValue(depth+1) {
				return false
			}
			if p.consume(',') {
				continue
			}
			return p.consume('}')
		}
	}
	return false
}

// keptString is a string decodeFast read, as a Go string: the states every record carries are the constants
// rather than an allocation each.
func keptString(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case Active:
		return Active
	case Deactivated:
		return Deactivated
	}
	return string(b)
}
