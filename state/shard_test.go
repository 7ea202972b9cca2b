package state

import (
	"maps"
	"strconv"
	"testing"

	"pgregory.net/rapid"
)

// TestShardProperty: a table built through builders (shards filled in place, then changed through overlays
// and packed, in any order of puts and deletes) reads exactly as a Go map of the same operations, and a
// published table never changes when a later builder changes its shards.
func TestShardProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		var cur *table
		model := map[string]int64{}
		var published []*table
		var prints []map[string]int64
		keys := rapid.IntRange(1, 3000).Draw(rt, "keys")
		for step := range rapid.IntRange(1, 8).Draw(rt, "builders") {
			next := &table{}
			if cur != nil {
				*next = *cur
			}
			var owned [nShards]bool
			hint := 0
			if cur == nil {
				hint = shardHint(rapid.IntRange(0, 2*keys).Draw(rt, "hint"))
			}
			for range rapid.IntRange(0, 2*keys).Draw(rt, "ops") {
				id := "k" + strconv.Itoa(rapid.IntRange(0, keys).Draw(rt, "key"))
				sh := own(next, &owned, shardOf(id), hint)
				if rapid.IntRange(0, 4).Draw(rt, "delete") == 0 {
					sh.del(id)
					delete(model, id)
					continue
				}
				rev := int64(step)<<32 | int64(len(model))
				sh.set(id, item{val: id, rev: rev})
				model[id] = rev
			}
			for i, o := range owned {
				if o {
					next.shards[i].pack()
				}
			}
			cur = next
			published = append(published, cur)
			prints = append(prints, maps.Clone(model))
		}
		for i, tb := range published {
			checkTable(rt, tb, prints[i], keys)
		}
	})
}

// checkTable compares a table with its model: every key present or absent as the model says, with its value,
// and nothing else held.
func checkTable(rt *rapid.T, tb *table, want map[string]int64, keys int) {
	for k := 0; k <= keys+1; k++ {
		id := "k" + strconv.Itoa(k)
		it, ok := tb.get(id)
		rev, wantOK := want[id]
		if ok != wantOK || ok && (it.rev != rev || it.val != id) {
			rt.Fatalf("%s: got %v %+v, want %v rev %d", id, ok, it, wantOK, rev)
		}
	}
	n := 0
	for _, sh := range tb.shards {
		n += sh.len()
		if sh != nil && sh.over != nil {
			rt.Fatalf("a published shard kept its overlay")
		}
	}
	if n != len(want) {
		rt.Fatalf("table holds %d entries, want %d", n, len(want))
	}
}
