package plugins

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"sync"

	"dynamo-images.local/epp/internal/backend"
	"dynamo-images.local/epp/internal/scheduling"
)

// prefixCacheScorer approximates "which model server already holds this prompt's prefix in
// its KV cache" without asking the servers: the prompt is cut into fixed-size character blocks,
// each block hash chains the hash of the block before it (so a hash identifies the whole prefix
// up to that block), and after every pick the hashes are remembered for the picked endpoint in
// a per-endpoint LRU of bounded size. An endpoint scores the fraction of the request's blocks
// that form a prefix it was sent before.
type prefixCacheScorer struct {
	base
	blockSize   int
	maxBlocks   int
	lruCapacity int
	seed        maphash.Seed

	mu      sync.RWMutex
	servers map[string]*hashLRU
}

type prefixCacheScorerParams struct {
	// HashBlockSize is the number of prompt characters per block.
	HashBlockSize int `yaml:"hashBlockSize"`
	// MaxPrefixBlocksToMatch caps the blocks hashed per request (bounds work on long prompts).
	MaxPrefixBlocksToMatch int `yaml:"maxPrefixBlocksToMatch"`
	// LRUCapacityPerServer bounds the block hashes remembered per endpoint.
	LRUCapacityPerServer int `yaml:"lruCapacityPerServer"`
}

// Defaults follow GIE's prefix-cache scorer.
const (
	defaultHashBlockSize          = 64
	defaultMaxPrefixBlocksToMatch = 256
	defaultLRUCapacityPerServer   = 31250
	prefixHashesCycleKey          = "prefix-cache-scorer/hashes/"
)

func newPrefixCacheScorer(name string, decode DecodeParams) (scheduling.Plugin, error) {
	p := prefixCacheScorerParams{
		HashBlockSize:          defaultHashBlockSize,
		MaxPrefixBlocksToMatch: defaultMaxPrefixBlocksToMatch,
		LRUCapacityPerServer:   defaultLRUCapacityPerServer,
	}
	if err := decode(&p); err != nil {
		return nil, err
	}
	if p.HashBlockSize <= 0 || p.MaxPrefixBlocksToMatch <= 0 || p.LRUCapacityPerServer <= 0 {
		return nil, fmt.Errorf("hashBlockSize, maxPrefixBlocksToMatch and lruCapacityPerServer must be positive")
	}
	return &prefixCacheScorer{
		base:        base{PrefixCacheScorerType, name},
		blockSize:   p.HashBlockSize,
		maxBlocks:   p.MaxPrefixBlocksToMatch,
		lruCapacity: p.LRUCapacityPerServer,
		seed:        maphash.MakeSeed(),
		servers:     map[string]*hashLRU{},
	}, nil
}

// blockHashes returns the chained hashes of the complete blocks of req's prompt. The model name
// seeds the chain: the same prompt for two models shares no cache.
func (s *prefixCacheScorer) blockHashes(req *scheduling.Request) []uint64 {
	n := len(req.Prompt) / s.blockSize
	if n > s.maxBlocks {
		n = s.maxBlocks
	}
	if n == 0 {
		return nil
	}
	hashes := make([]uint64, n)
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(req.Model)
	prev := h.Sum64()
	var prevBytes [8]byte
	for i := 0; i < n; i++ {
		h.Reset()
		binary.LittleEndian.PutUint64(prevBytes[:], prev)
		h.Write(prevBytes[:])
		h.WriteString(req.Prompt[i*s.blockSize : (i+1)*s.blockSize])
		prev = h.Sum64()
		hashes[i] = prev
	}
	return hashes
}

func (s *prefixCacheScorer) Score(_ context.Context, cycle *scheduling.CycleState, req *scheduling.Request, endpoints []*backend.Endpoint) []float64 {
	hashes := s.blockHashes(req)
	// The cycle key includes the instance name: two prefix scorers may differ in block size.
	cycle.Write(prefixHashesCycleKey+s.Name(), hashes)
	scores := make([]float64, len(endpoints))
	if len(hashes) == 0 {
		return scores
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i, e := range endpoints {
		if lru := s.servers[e.Key()]; lru != nil {
			scores[i] = float64(lru.matchedPrefix(hashes)) / float64(len(hashes))
		}
	}
	return scores
}

// PostPick remembers the request's prefix for the primary pick: that is where its KV cache
// will be built.
func (s *prefixCacheScorer) PostPick(_ context.Context, cycle *scheduling.CycleState, req *scheduling.Request, picked []*backend.Endpoint) {
	if len(picked) == 0 {
		return
	}
	var hashes []uint64
	if v, ok := cycle.Read(prefixHashesCycleKey + s.Name()); ok {
		hashes, _ = v.([]uint64)
	} else {
		hashes = s.blockHashes(req)
	}
	if len(hashes) == 0 {
		return
	}
	key := picked[0].Key()
	s.mu.Lock()
	defer s.mu.Unlock()
	lru := s.servers[key]
	if lru == nil {
		lru = newHashLRU(s.lruCapacity)
		s.servers[key] = lru
	}
	// Newest-last insertion would make the shared leading blocks the first to be evicted,
	// which breaks every longer match; add from the tail so the leading blocks stay fresh.
	for i := len(hashes) - 1; i >= 0; i-- {
		lru.add(hashes[i])
	}
}

// EndpointRemoved drops everything remembered for an endpoint that left the pool.
func (s *prefixCacheScorer) EndpointRemoved(key string) {
	s.mu.Lock()
	delete(s.servers, key)
	s.mu.Unlock()
}

// hashLRU is a fixed-capacity set of block hashes that evicts the least recently added or
// refreshed hash. The recency list lives in one slice linked by index, and the index maps to
// slots: nothing in it is a pointer, so the garbage collector never scans the (up to
// lruCapacityPerServer entries per endpoint) prefix index, and a full LRU adds and evicts
// without allocating. A container/list took an element and a boxed value per hash, all of
// which every collection had to trace.
type hashLRU struct {
	capacity   int
	nodes      []lruNode        // grows to capacity; slots are reused on eviction
	index      map[uint64]int32 // hash -> slot in nodes
	head, tail int32            // most and least recent slot; noSlot when empty
}

type lruNode struct {
	hash       uint64
	prev, next int32 // towards head / towards tail; noSlot at the ends
}

const noSlot = -1

func newHashLRU(capacity int) *hashLRU {
	return &hashLRU{capacity: capacity, index: make(map[uint64]int32), head: noSlot, tail: noSlot}
}

func (l *hashLRU) contains(h uint64) bool {
	_, ok := l.index[h]
	return ok
}

func (l *hashLRU) add(h uint64) {
	if slot, ok := l.index[h]; ok {
		l.unlink(slot)
		l.pushFront(slot)
		return
	}
	var slot int32
	if len(l.nodes) < l.capacity {
		l.nodes = append(l.nodes, lruNode{})
		slot = int32(len(l.nodes) - 1)
	} else { // full: reuse the least recent slot
		slot = l.tail
		delete(l.index, l.nodes[slot].hash)
		l.unlink(slot)
	}
	l.nodes[slot].hash = h
	l.pushFront(slot)
	l.index[h] = slot
}

func (l *hashLRU) unlink(slot int32) {
	n := &l.nodes[slot]
	if n.prev == noSlot {
		l.head = n.next
	} else {
		l.nodes[n.prev].next = n.next
	}
	if n.next == noSlot {
		l.tail = n.prev
	} else {
		l.nodes[n.next].prev = n.prev
	}
}

func (l *hashLRU) pushFront(slot int32) {
	l.nodes[slot].prev, l.nodes[slot].next = noSlot, l.head
	if l.head == noSlot {
		l.tail = slot
	} else {
		l.nodes[l.head].prev = slot
	}
	l.head = slot
}

func (l *hashLRU) len() int { return len(l.index) }

// matchedPrefix returns how many leading hashes of chain the LRU holds.
//
// The set of remembered blocks is prefix-closed: a chain is inserted tail first, so every
// block is more recent than the blocks after it, and refreshing a block (another request with
// the same prefix) refreshes its whole prefix too. Eviction therefore always takes a chain's
// last remembered block first, never one in the middle. A binary search thus finds the
// matched length in O(log n) map lookups instead of one per block, which matters when
// thousands of picks a second each check dozens of blocks against every endpoint.
func (l *hashLRU) matchedPrefix(chain []uint64) int {
	lo, hi := 0, len(chain) // invariant: chain[:lo] held, chain[hi:] not
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if l.contains(chain[mid-1]) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}
