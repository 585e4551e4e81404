package plugins

import (
	"container/list"
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
// refreshed hash.
type hashLRU struct {
	capacity int
	order    *list.List // front = most recent; values are uint64
	items    map[uint64]*list.Element
}

func newHashLRU(capacity int) *hashLRU {
	return &hashLRU{capacity: capacity, order: list.New(), items: make(map[uint64]*list.Element)}
}

func (l *hashLRU) contains(h uint64) bool {
	_, ok := l.items[h]
	return ok
}

func (l *hashLRU) add(h uint64) {
	if el, ok := l.items[h]; ok {
		l.order.MoveToFront(el)
		return
	}
	l.items[h] = l.order.PushFront(h)
	if l.order.Len() > l.capacity {
		oldest := l.order.Back()
		l.order.Remove(oldest)
		delete(l.items, oldest.Value.(uint64))
	}
}

func (l *hashLRU) len() int { return l.order.Len() }

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
