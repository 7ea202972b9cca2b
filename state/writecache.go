package state

import (
	"sync"
)

// writeCache remembers, per key, the value and ModRevision the store last wrote or read, so that the next write
// of the key can go straight to its compare-and-swap transaction without reading it first. An entry is only a
// guess: the transaction compares the ModRevision, and a guess that is no longer current fails the compare and
// costs that one transaction (which returns the current value for the retry); an error decided on a guess is
// checked by a linearizable read before it is returned. So a stale entry costs time, never correctness. Safe for
// concurrent use; bounded to maxWriteCache entries.
type writeCache struct {
	mu sync.Mutex
	m  map[string]cachedKV
}

// cachedKV is a key's value at ModRevision modRev; modRev 0 is a key that did not exist.
type cachedKV struct {
	value  []byte
	modRev int64
}

// maxWriteCache bounds the cache; when it is full an arbitrary entry makes room.
const maxWriteCache = 4096

func (c *writeCache) get(key string) (cachedKV, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kv, ok := c.m[key]
	return kv, ok
}

// put records key's value. Concurrent writers of one key may leave the older of their results: that entry only
// costs the next write one failed compare.
func (c *writeCache) put(key string, kv cachedKV) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedKV{}
	}
	if _, ok := c.m[key]; !ok && len(c.m) >= maxWriteCache {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[key] = kv
}

func (c *writeCache) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}
