package state

import (
	"hash/maphash"
	"maps"
	"math/bits"
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
	slots []uint64 // 0 is empty, else tagOf(hash) << 32 | index in ents + 1
	mine  bool     // ents and slots were made by the builder that owns the shard, which writes them in place
}

type entry struct {
	key string
	it  item
}

var shardSeed = maphash.MakeSeed()

func hashOf(id string) uint64 { return maphash.String(shardSeed, id) }

func shardOf(id string) int { return int(hashOf(id) & (nShards - 1)) }

// A hash's low shardBits pick the shard, its high bits the home slot in the shard's index (home), and bits
// 8–39 are the tag kept in the slot, so that a probe compares an entry's key only when its tag matches.
func tagOf(h uint64) uint64 { return h >> shardBits & (1<<32 - 1) }

// home is the first slot to probe of an index of size slots: the multiply-shift range reduction, so an index
// need not be a power of two and can be sized close to its fill bound.
func home(h uint64, size int) int {
	hi, _ := bits.Mul64(h, uint64(size))
	return int(hi)
}

// get is the lookup of every decision: one hash, no lock, no allocation. It is find without the key, written
// out: get calling find made a miss 40% slower (BenchmarkSnapshotLookup/miss, 14 → 21 ns).
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

// getBytes is get of an ID held as bytes (a member of a record being decoded), making no string of it.
func (t *table) getBytes(id []byte) (item, bool) {
	h := maphash.Bytes(shardSeed, id) // the hash maphash.String gives the same bytes
	sh := t.shards[h&(nShards-1)]
	if sh == nil {
		return item{}, false
	}
	if sh.over != nil {
		if it, ok := sh.over[string(id)]; ok {
			return it, it.val != nil
		}
	}
	if e := packedEntry(sh, h, id); e != nil {
		return e.it, true
	}
	return item{}, false
}

// find is get that also returns the table's own string of the ID (id itself when the entry is in an overlay).
func (t *table) find(id string) (string, item, bool) {
	h := hashOf(id)
	sh := t.shards[h&(nShards-1)]
	if sh == nil {
		return "", item{}, false
	}
	if sh.over != nil {
		if it, ok := sh.over[id]; ok {
			return id, it, it.val != nil
		}
	}
	if e := packedEntry(sh, h, id); e != nil {
		return e.key, e.it, true
	}
	return "", item{}, false
}

// packed looks id (of hash h) up in the packed entries only.
func (sh *shard) packed(h uint64, id string) (item, bool) {
	if e := packedEntry(sh, h, id); e != nil {
		return e.it, true
	}
	return item{}, false
}

// packedEntry is the packed entry of id (of hash h), or nil.
func packedEntry[K ~string | ~[]byte](sh *shard, h uint64, id K) *entry {
	n := len(sh.slots)
	if n == 0 {
		return nil
	}
	tag := tagOf(h)
	for i := home(h, n); ; {
		s := sh.slots[i]
		if s == 0 {
			return nil
		}
		if s>>32 == tag {
			if e := &sh.ents[uint32(s)-1]; e.key == string(id) {
				return e
			}
		}
		if i++; i == n {
			i = 0
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
// were none, one it fills in place, with room for about hint entries.
func own(t *table, owned *[nShards]bool, i, hint int) *shard {
	if !owned[i] {
		next := &shard{}
		if old := t.shards[i]; old == nil || old.ents == nil && old.over == nil {
			next.mine = true
			if hint > 0 {
				next.ents = make([]entry, 0, hint)
				next.slots = make([]uint64, indexSize(hint))
			}
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
	n := len(sh.slots)
	if n == 0 {
		return -1
	}
	for i := home(h, n); ; {
		s := sh.slots[i]
		if s == 0 {
			return -1
		}
		if s>>32 == tagOf(h) && sh.ents[uint32(s)-1].key == id {
			return i
		}
		if i++; i == n {
			i = 0
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
		sh.slots = index(make([]uint64, indexSize(2*n)), sh.ents, 0)
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

// maxLoad is the index's fill bound: linear probing at 3/4 reads about 2.5 slots for a hit and 8.5 for a miss,
// all in the index (the tag in each slot spares reading entries), one or two cache lines.
const maxLoadNum, maxLoadDen = 3, 4

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
		sh.slots = index(make([]uint64, indexSize(n)), ents, 0)
	}
	sh.over, sh.ents = nil, ents
}

// indexSize is the size of an index for n entries: the smallest above the fill bound.
func indexSize(n int) int { return n*maxLoadDen/maxLoadNum + 1 }

// index adds ents, which sit at from in the shard's entries, to slots and returns it.
func index(slots []uint64, ents []entry, from int) []uint64 {
	n := len(slots)
	for j := range ents {
		h := hashOf(ents[j].key)
		i := home(h, n)
		for slots[i] != 0 {
			if i++; i == n {
				i = 0
			}
		}
		slots[i] = tagOf(h)<<32 | uint64(from+j+1)
	}
	return slots
}
