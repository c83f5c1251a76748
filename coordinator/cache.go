package coordinator

import (
	"container/list"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// The caches' budgets, counted as the encoded size of the rollups kept in
// their view: some fifty 200-member rollups in the FULL view, and about
// eleven thousand in the BASIC one, which leaves members out. Decoded, a
// rollup takes ten to thirty times its encoded size (a message per cell and
// per member result), so each cache's share of the heap stays near 30 MB.
const (
	fullCacheBytes  = 1 << 20
	basicCacheBytes = 2 << 20
)

// rollupCache keeps decoded finished rollups, most recently read first, so
// that reading one again costs neither a decode nor, for the BASIC view, a
// copy. A finished rollup never changes (store.finish is its last write),
// so a cached one is shared by every reader and must not be modified; a
// RUNNING one is never cached.
type rollupCache struct {
	max int // bytes kept at most

	mu   sync.Mutex // protects the fields below
	size int
	lru  *list.List                 // of *cachedRollup, most recently used first
	byID map[cacheKey]*list.Element // into lru
}

type cacheKey struct {
	seq  uint64
	full bool
}

type cachedRollup struct {
	key  cacheKey
	r    *fedreportv1.Rollup
	size int
}

func newRollupCache(max int) *rollupCache {
	return &rollupCache{max: max, lru: list.New(), byID: map[cacheKey]*list.Element{}}
}

// get returns the cached rollup seq in the view, or nil.
func (c *rollupCache) get(seq uint64, full bool) *fedreportv1.Rollup {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[cacheKey{seq, full}]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cachedRollup).r
}

// add keeps r, finished rollup seq in the view, evicting the least recently
// read ones past the budget. A rollup larger than the whole budget is not kept.
func (c *rollupCache) add(seq uint64, full bool, r *fedreportv1.Rollup) {
	size := proto.Size(r)
	if size > c.max {
		return
	}
	k := cacheKey{seq, full}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byID[k]; ok {
		return // another reader decoded it at the same time
	}
	c.byID[k] = c.lru.PushFront(&cachedRollup{key: k, r: r, size: size})
	c.size += size
	for c.size > c.max {
		last := c.lru.Back()
		old := c.lru.Remove(last).(*cachedRollup)
		delete(c.byID, old.key)
		c.size -= old.size
	}
}

// basicView returns r as the BASIC view shows it: every field but members
// (a field added later included), sharing r's messages, which neither may
// modify.
func basicView(r *fedreportv1.Rollup) *fedreportv1.Rollup {
	if len(r.GetMembers()) == 0 {
		return r
	}
	basic := &fedreportv1.Rollup{}
	dst := basic.ProtoReflect()
	r.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Number() != membersField {
			dst.Set(fd, v)
		}
		return true
	})
	return basic
}
