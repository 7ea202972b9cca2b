package state

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// A fresh gateway's first list of a million records costs etcd seconds of CPU, and is bounded by it. A gateway
// can take its first snapshot from an admin node's replica instead, then watch etcd from the snapshot's
// revision + 1: the admin node turns its snapshot back into records (eachRecord), and the gateway builds its
// snapshot from them with the code it builds an etcd list with (builder.putListed). The records need not be the
// ones etcd holds, only decode to what the snapshot holds: each value is the smallest record decode (or
// decodeMirror) reads back into the same decoded form, so a record deact could not read, held as a deny, is sent
// as a readable record that denies the same.

// keyPrefixes are the key prefixes of the record kinds, as keyOf spells them.
var keyPrefixes = func() (p [nKinds]string) {
	for k := range p {
		p[k] = keyOf(kind(k), "")
	}
	return p
}()

// eachRecord calls emit with every record a builder needs to rebuild s through putListed, in any order: first
// the local records, kind by kind (apps before clients, whose entries then share the apps' strings), then the
// mirrored records of orgs, projects and apps. key and value are valid during the call only. It stops at the
// first error, emit's or its own (a decoded form no record reads back into, which decode never makes), and
// returns it.
//
// The revision of s is not the newest of its records' (a delete advances it too): the caller sends s.Revision()
// beside the records, as a list's header does.
func (s *Snapshot) eachRecord(emit func(key []byte, modRev int64, value []byte) error) error {
	if s == nil {
		return nil
	}
	e := recordEncoder{emit: emit}
	for k := kindOrg; k <= kindAccount; k++ {
		for i, sh := range s.tables[k].shards {
			// A subject's layers are in the shard of the same number of the layers' table: where that one is
			// empty, no subject of this shard has any, and none is looked up (a hash of the ID each).
			layered := s.layers != nil && s.layers.subjects[k].shards[i].len() > 0
			sh.each(func(id string, it item) {
				if e.err != nil {
					return
				}
				// A subject with layers shows their merge; the record its own key holds is the local layer.
				if layered {
					if l := s.layersOf(k, id); l != nil {
						if it = l.local; it.val == nil {
							return
						}
					}
				}
				e.local(k, id, it)
			})
		}
	}
	if s.layers == nil {
		return e.err
	}
	// The layers of clients and domains are derived from the mirrored apps and orgs (reindexMirror): not records.
	for _, k := range [...]kind{kindOrg, kindProject, kindApp} {
		for _, sh := range s.layers.subjects[k].shards {
			sh.each(func(_ string, it item) {
				for _, m := range it.val.(*layers).mirrors {
					if e.err != nil {
						return
					}
					e.mirror(k, m)
				}
			})
		}
	}
	return e.err
}

// recordEncoder writes the records of eachRecord into two buffers it reuses, so that encoding a snapshot
// allocates next to nothing however many records it holds.
type recordEncoder struct {
	emit     func(key []byte, modRev int64, value []byte) error
	key, val []byte
	err      error
}

// local emits the local record of (k, id).
func (e *recordEncoder) local(k kind, id string, it item) {
	e.key = append(append(e.key[:0], keyPrefixes[k]...), id...)
	v := e.val[:0]
	switch x := it.val.(type) {
	case *OrgState:
		if x.Disabled&^OpsAll != 0 {
			e.fail(fmt.Errorf("disables ops %#x no record can", uint8(x.Disabled)))
			return
		}
		// The state and the flags that are set, as orgJSON stores them. An unreadable record's placeholder
		// disables every op, so it is sent as a record that sets every flag.
		v = append(v, `{"state":"`...)
		v = append(v, stateName(x.Disabled != 0)...)
		v = append(v, '"')
		for _, f := range [...]struct {
			op   Ops
			name string
		}{{OpLogin, "disableLogin"}, {OpToken, "disableToken"}, {OpBackup, "disableBackup"}, {OpRestore, "disableRestore"}} {
			if x.Disabled&f.op != 0 {
				v = append(append(append(v, ",\""...), f.name...), `":true`...)
			}
		}
		v = append(v, '}')
	case *ProjectState:
		v = e.projectValue(v, x.OrgID, x.Deactivated)
	case *AppState:
		// The key holds the app's ID and project, as decode reads them.
		v = e.projectValue(v, x.OrgID, x.Deactivated)
	case *Client:
		// The key says whose entry it is: the clientId member is not sent, as decode does not keep it.
		v = append(v, `{"appId":`...)
		v = e.str(v, x.AppID)
		v = append(v, `,"projectId":`...)
		v = e.str(v, x.ProjectID)
		v = append(v, `,"orgId":`...)
		v = append(e.str(v, x.OrgID), '}')
	case *Domain:
		v = append(e.str(append(v, `{"orgId":`...), x.OrgID), '}')
	case *Account:
		v = append(e.str(append(v, `{"orgId":`...), x.OrgID), '}')
	default:
		e.fail(fmt.Errorf("no record holds a %T", it.val))
		return
	}
	e.val = v
	if e.err == nil {
		e.err = e.emit(e.key, it.rev, v)
	}
}

// projectValue is the record of a project or app.
func (e *recordEncoder) projectValue(v []byte, orgID string, deactivated bool) []byte {
	v = e.str(append(v, `{"orgId":`...), orgID)
	v = append(append(append(v, `,"state":"`...), stateName(deactivated)...), `"}`...)
	return v
}

// mirror emits the mirrored record one layer entry of a k subject comes from, as a mirrorJSON that decodeMirror
// reads back into the same mirrorState: an unreadable record's placeholder (everything disabled and
// deactivated, the index entries of the record it replaced) included.
func (e *recordEncoder) mirror(k kind, m layerEntry) {
	e.key = append(e.key[:0], m.ref...)
	ms := m.val.(*mirrorState) // the layers of orgs, projects and apps hold nothing else
	// decodeMirror cannot make these, nor read them back: refuse rather than send a record that reads otherwise.
	switch {
	case ms.disabled&^OpsAll != 0:
		e.fail(fmt.Errorf("disables ops %#x no record can", uint8(ms.disabled)))
	case k == kindOrg && (ms.orgID != "" || ms.clientIDs != nil || ms.deactivated && ms.disabled != OpsAll):
		e.fail(fmt.Errorf("an org with an owner, client IDs, or deactivated and not disabled"))
	case k != kindOrg && ms.domains != nil, k == kindProject && ms.clientIDs != nil:
		e.fail(fmt.Errorf("a project or app with domains, or a project with client IDs"))
	}
	if e.err != nil {
		return
	}
	v := append(e.val[:0], '{')
	if ms.orgID != "" {
		v = e.str(append(v, `"orgId":`...), ms.orgID)
	}
	if ms.disabled != 0 {
		v = e.str(append(comma(v), `"disabled":`...), ms.disabled.String())
	}
	if ms.deactivated {
		// A tombstone is sent as deactivated and disabling everything, which decodeMirror reads as it reads
		// "removed"; an org's too.
		v = append(comma(v), `"deactivated":true`...)
	}
	// A list, even an empty one, is sent when there is one: decodeMirror keeps [] apart from none.
	if ms.clientIDs != nil {
		v = append(comma(v), `"clientIds":[`...)
		for i, c := range ms.clientIDs {
			if i > 0 {
				v = append(v, ',')
			}
			v = e.str(v, c)
		}
		v = append(v, ']')
	}
	if ms.domains != nil {
		v = append(comma(v), `"domains":[`...)
		for i, d := range ms.domains {
			if i > 0 {
				v = append(v, ',')
			}
			// decodeMirror normalizes what it reads, trimming one final dot: a domain that still ends in one
			// ("a.." was read as "a.") is sent with one more, and lower case stays as it is.
			if strings.HasSuffix(d, ".") {
				v = e.str(v, d+".")
			} else {
				v = e.str(v, d)
			}
		}
		v = append(v, ']')
	}
	v = append(v, '}')
	e.val = v
	if e.err == nil {
		e.err = e.emit(e.key, m.rev, v)
	}
}

func comma(v []byte) []byte {
	if v[len(v)-1] != '{' {
		v = append(v, ',')
	}
	return v
}

// str appends s as a JSON string that decode reads back as s. Strings decoded from records are valid UTF-8
// (decodeFast keeps ASCII only, encoding/json replaces what is not UTF-8), and only those are sent raw; anything
// else could not be read back, and fails the encoding.
func (e *recordEncoder) str(v []byte, s string) []byte {
	const hex = "0123456789abcdef"
	v = append(v, '"')
	// Most strings are plain ASCII, appended at once; the rest is looked at byte by byte.
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] < utf8.RuneSelf && s[i] != '"' && s[i] != '\\' {
		i++
	}
	v = append(v, s[:i]...)
	if i < len(s) && !utf8.ValidString(s[i:]) {
		e.fail(fmt.Errorf("%q is not UTF-8", s))
		return v
	}
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			v = append(v, '\\', c)
		case c < 0x20:
			v = append(v, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			v = append(v, c)
		}
	}
	return append(v, '"')
}

func (e *recordEncoder) fail(err error) {
	if e.err == nil {
		e.err = fmt.Errorf("encode %s: %w", e.key, err)
	}
}
