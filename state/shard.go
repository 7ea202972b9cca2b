package state

import (
	"hash/maphash"
	"maps"
)

// table is one record kind's index (or a derived index, or the layers of one kind): nShards shards by the hash
// of the ID. A nil shard is empty.
type table struct {
	shards [nShards]*shard
}

// shard is one part of a table. A published shard is packed: its entries in one slice and an open-addressing
// index over them, two allocations however many records it holds and about 50 bytes per record, where a Go
// map took about 85 (its tables double, so at a million records most shards sat just past a split, half
// empty). Packed shards are immutable and shared between snapshots.
//
// A builder writes a shard it started empty (every shard of a list) in place: its entries and index are its
// own until it publishes them (mine). Changes to a shard it shares with published snapshots go to an overlay
// map that lookups read first (a nil val hides a packed entry); pack folds the overlay in before the snapshot
// is published. A snapshot that was never packed (tests that read a builder's snapshot) reads the same as a
// packed one.
type shard struct {
	over  map[string]item
	ents  []entry
	slots []uint64 // len is a power of two; 0 is empty, else the hash's top 32 bits << 32 | index in ents + 1
	mine  bool     // ents and slots were made by the builder that owns the shard, which writes them in place
}

type entry struct {
	key string
	it  item
}

var shardSeed = maphash.MakeSeed()

func hashOf(id string) uint64 { return maphash.String(shardSeed, id) }

func shardOf(id string) int { return int(hashOf(id) & (nShards - 1)) }

// get is the lookup of every decision: one hash, no lock, no allocation.
func (t *table) get(id string) (item, bool) {
	h := hashOf(id)
	sh := t.shards[h&(nShards-1)]
	if sh == nil {
		return item{}, false
	}
	if sh.over != nil {
		if it, ok := sh.over[id]; ok {
			return it, it.val != nil
		}
	}
	return sh.packed(h, id)
}

// packed looks id (of hash h) up in the packed entries only.
func (sh *shard) packed(h uint64, id string) (item, bool) {
	if len(sh.slots) == 0 {
		return item{}, false
	}
	mask := uint64(len(sh.slots) - 1)
	tag := h >> 32
	for i := (h >> shardBits) & mask; ; i = (i + 1) & mask {
		s := sh.slots[i]
		if s == 0 {
			return item{}, false
		}
		if s>>32 == tag {
			if e := &sh.ents[uint32(s)-1]; e.key == id {
				return e.it, true
			}
		}
	}
}

// len is the number of entries; nil-safe.
func (sh *shard) len() int {
	if sh == nil {
		return 0
	}
	if sh.over == nil {
		return len(sh.ents)
	}
	n := 0
	sh.each(func(string, item) { n++ })
	return n
}

// each calls f for every entry; nil-safe.
func (sh *shard) each(f func(id string, it item)) {
	if sh == nil {
		return
	}
	for i := range sh.ents {
		e := &sh.ents[i]
		if _, ok := sh.over[e.key]; !ok {
			f(e.key, e.it)
		}
	}
	for id, it := range sh.over {
		if it.val != nil {
			f(id, it)
		}
	}
}

// own returns shard i of t for writing by a builder (owned[i] says whether it already did): the first write
// makes the builder a shard of its own, sharing the packed entries, which it never writes; or, where there
// were none, one it fills in place.
func own(t *table, owned *[nShards]bool, i int) *shard {
	if !owned[i] {
		next := &shard{}
		if old := t.shards[i]; old == nil || old.ents == nil && old.over == nil {
			next.mine = true
		} else {
			next.ents, next.slots = old.ents, old.slots
			if old.over != nil {
				next.over = maps.Clone(old.over) // a base that was never packed
			}
		}
		t.shards[i] = next
		owned[i] = true
	}
	return t.shards[i]
}

// set stores it under id in an owned shard; a nil it.val deletes.
func (sh *shard) set(id string, it item) {
	if it.val == nil {
		sh.del(id)
		return
	}
	if sh.mine {
		sh.setInPlace(hashOf(id), id, it)
		return
	}
	if sh.over == nil {
		sh.over = map[string]item{}
	}
	sh.over[id] = it
}

// del removes id from an owned shard.
func (sh *shard) del(id string) {
	if sh.mine {
		sh.delInPlace(hashOf(id), id)
		return
	}
	if _, ok := sh.packed(hashOf(id), id); ok {
		if sh.over == nil {
			sh.over = map[string]item{}
		}
		sh.over[id] = item{} // hides the packed entry until pack
		return
	}
	delete(sh.over, id)
}

// slotOf is the index slot of id (of hash h), or -1.
func (sh *shard) slotOf(h uint64, id string) int {
	if len(sh.slots) == 0 {
		return -1
	}
	mask := uint64(len(sh.slots) - 1)
	for i := (h >> shardBits) & mask; ; i = (i + 1) & mask {
		s := sh.slots[i]
		if s == 0 {
			return -1
		}
		if s>>32 == h>>32 && sh.ents[uint32(s)-1].key == id {
			return int(i)
		}
	}
}

// setInPlace is set in a shard of the builder's own. Entries and index double when full, so a list of n
// records copies about n entries in all.
func (sh *shard) setInPlace(h uint64, id string, it item) {
	if i := sh.slotOf(h, id); i >= 0 {
		sh.ents[uint32(sh.slots[i])-1].it = it
		return
	}
	if len(sh.ents) == cap(sh.ents) {
		sh.ents = append(make([]entry, 0, max(8, 2*cap(sh.ents))), sh.ents...)
	}
	sh.ents = append(sh.ents, entry{key: id, it: it})
	n := len(sh.ents)
	if n*maxLoadDen >= len(sh.slots)*maxLoadNum {
		sh.slots = index(make([]uint64, max(8, 2*len(sh.slots))), sh.ents, 0)
		return
	}
	sh.slots = index(sh.slots, sh.ents[n-1:], n-1)
}

// delInPlace is del in a shard of the builder's own: the last entry takes the place of the removed one, and the
// index is rebuilt (a list deletes rarely: an unreadable index entry, a mirrored subject's merge).
func (sh *shard) delInPlace(h uint64, id string) {
	i := sh.slotOf(h, id)
	if i < 0 {
		return
	}
	j, last := uint32(sh.slots[i])-1, len(sh.ents)-1
	sh.ents[j] = sh.ents[last]
	sh.ents[last] = entry{}
	sh.ents = sh.ents[:last]
	clear(sh.slots)
	sh.slots = index(sh.slots, sh.ents, 0)
}

// maxLoad is the packed index's fill bound (7/8, as Go's maps): with the hash's tag in each slot, a probe reads
// the index only, and an entry only on a tag match.
const maxLoadNum, maxLoadDen = 7, 8

// pack folds the overlay of an owned shard into new packed entries and index. An overlay of updates only (the
// usual watch event: a record changed) keeps the index, and one of inserts adds to a copy of it while it has
// room; a delete rebuilds the index. The old entries and index, still read by published snapshots, are never
// written.
func (sh *shard) pack() {
	sh.mine = false
	if sh.over == nil {
		return
	}
	inserts, deletes := 0, 0
	for id, it := range sh.over {
		_, inPacked := sh.packed(hashOf(id), id)
		switch {
		case it.val == nil:
			deletes++
		case !inPacked:
			inserts++
		}
	}
	n := len(sh.ents) + inserts - deletes
	ents := make([]entry, 0, n)
	for _, e := range sh.ents {
		if it, ok := sh.over[e.key]; ok {
			if it.val == nil {
				continue
			}
			e.it = it
		}
		ents = append(ents, e)
	}
	old := len(ents)
	for id, it := range sh.over {
		if it.val == nil {
			continue
		}
		if _, inPacked := sh.packed(hashOf(id), id); !inPacked {
			ents = append(ents, entry{key: id, it: it})
		}
	}
	size := len(sh.slots)
	switch {
	case n == 0:
		sh.over, sh.ents, sh.slots = nil, nil, nil
		return
	case deletes == 0 && inserts == 0:
		// Same keys in the same order: the index still holds.
	case deletes == 0 && n*maxLoadDen < size*maxLoadNum:
		sh.slots = index(append(make([]uint64, 0, size), sh.slots...), ents[old:], old)
	default:
		size = 8
		for n*maxLoadDen >= size*maxLoadNum {
			size *= 2
		}
		sh.slots = index(make([]uint64, size), ents, 0)
	}
	sh.over, sh.ents = nil, ents
}

// index adds ents, which sit at from in the shard's entries, to slots and returns it.
func index(slots []uint64, ents []entry, from int) []uint64 {
	mask := uint64(len(slots) - 1)
	for j := range ents {
		h := hashOf(ents[j].key)
		i := (h >> shardBits) & mask
		for slots[i] != 0 {
			i = (i + 1) & mask
		}
		slots[i] = h>>32<<32 | uint64(from+j+1)
	}
	return slots
}
