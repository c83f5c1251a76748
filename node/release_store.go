package node

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/isa-alliance/fedreport/internal/periods"
)

// The release in the data file:
//
//	release        relKey (13) -> relCell (25): every release cell that is not a published 0
//	release_inner  innerKey (8) -> innerVal (24): the inner cells the release was computed from
//	release_history  metric (1) | block's first day (4) | seq (8) -> one release of the block
//	               (release_history.go)
//	meta           release_version, release_data_version, release_policy
var (
	bucketRelease      = []byte("release")
	bucketReleaseInner = []byte("release_inner")

	keyReleaseVersion     = []byte("release_version")
	keyReleaseDataVersion = []byte("release_data_version")
	keyReleasePolicy      = []byte("release_policy")
)

// blockID names one metric over one block of time.
type blockID struct {
	metric uint8
	year   int // the block's first year
}

// refreshRelease computes the release for the file's current data version,
// if it is not already stored: only the blocks whose records changed are
// protected again, against the release they had. It runs with the writer
// token held (or at open), so the records cannot move under it.
func (s *Store) refreshRelease() error {
	s.releaseMu.Lock()
	defer s.releaseMu.Unlock()
	start := time.Now()
	fingerprint := s.policy.fingerprint()
	var (
		dataVersion uint64
		upToDate    bool
		samePolicy  bool
		now, old    map[innerKey]innerVal
		base        map[relKey]relCell
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		dataVersion = getUint64(meta.Get(keyDataVersion))
		samePolicy = string(meta.Get(keyReleasePolicy)) == fingerprint
		upToDate = samePolicy && meta.Get(keyReleaseVersion) != nil && getUint64(meta.Get(keyReleaseDataVersion)) == dataVersion
		if upToDate {
			return nil
		}
		var err error
		if now, err = readInner(tx, s.cal); err != nil {
			return err
		}
		if samePolicy {
			old, base, err = readRelease(tx)
		}
		return err
	})
	if err != nil || upToDate {
		return err
	}
	if !samePolicy && old == nil {
		s.log.Info("computing the protected release afresh", "data", s.path, "reason", "new file or changed policy")
	}

	// The blocks to protect again: those whose inner cells changed.
	changed := map[blockID]bool{}
	blockOfInner := func(k innerKey) blockID {
		first, _ := s.cal.blockOf(yearOf(k.atom))
		return blockID{k.metric, first}
	}
	for k, v := range now {
		if old[k] != v {
			changed[blockOfInner(k)] = true
		}
	}
	for k := range old {
		if _, ok := now[k]; !ok {
			changed[blockOfInner(k)] = true
		}
	}
	ids := make([]blockID, 0, len(changed))
	for id := range changed {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b blockID) int { return int(a.metric)*10000 + a.year - int(b.metric)*10000 - b.year })

	masks := s.policy.masks()
	results := make([]map[relKey]relCell, len(ids))
	histories := make([]historyWrite, len(ids))
	exposedTotal, unaudited, fallbacks := 0, 0, 0
	for i, id := range ids {
		win := s.cal.blockWindow(id.year)
		newProblem := func() *blockProblem {
			return newBlockProblem(s.cal, masks, id.metric, win, uint64(s.policy.MinCellCount), uint64(s.policy.DominancePercent))
		}
		var blockBase map[relKey]relCell
		if samePolicy && base != nil {
			blockBase = map[relKey]relCell{}
			for k, c := range base {
				if k.metric == id.metric && k.from >= win.From && k.to <= win.To {
					blockBase[k] = c
				}
			}
		}
		blockNow, blockOld := innerIn(now, id.metric, win), innerIn(old, id.metric, win)
		p := newProblem()
		p.fill(blockNow, blockOld, blockBase)
		var hist []histVersion
		if p.based {
			if err := s.db.View(func(tx *bolt.Tx) error {
				var err error
				hist, err = p.readHistory(tx)
				return err
			}); err != nil {
				return err
			}
		}
		// A history is one of the block's when it ends with the release
		// the block has; a block whose release published every cell as 0
		// starts a new one (nothing before it links to what comes after).
		recorded := p.based && p.historyMatches(hist, blockOld, blockBase) && len(hist) < s.historyLimit
		fresh := len(blockBase) == 0 && len(blockOld) == 0
		protected, tooLarge := false, false
		if recorded && p.withheldOrPending() {
			hp := newProblem()
			hp.fill(blockNow, blockOld, blockBase)
			hp.useHistory(hist)
			exposed, ok := hp.protectHistory()
			if ok {
				p, protected = hp, true
				exposedTotal += exposed
			} else {
				fallbacks++
				tooLarge = hp.unaudited
			}
		}
		if !protected {
			exposedTotal += p.protect()
		}
		if p.unaudited {
			unaudited++
		}
		results[i] = p.result()
		cur := p.currentVersion(results[i])
		switch {
		case fresh:
			histories[i] = historyWrite{reset: true, entry: p.encodeHistory(nil, cur)}
		case recorded && !tooLarge:
			histories[i] = historyWrite{entry: p.encodeHistory(hist[len(hist)-1].inner, cur)}
		default:
			// Too long, too large to audit, or not the block's: from now
			// on the block keeps what it withholds withheld.
			histories[i] = historyWrite{reset: true}
		}
	}
	if fallbacks > 0 {
		s.log.Info("blocks could not republish cells against their history; what they withheld stays withheld", "data", s.path, "blocks", fallbacks)
	}
	if unaudited > 0 {
		s.log.Warn("blocks of the release were too large for the LP audit; they rest on elimination and sum checks alone", "data", s.path, "blocks", unaudited)
	}
	if exposedTotal > 0 {
		// Not a member's count: how many protected sums an earlier release
		// (computed under weaker rules) already revealed.
		s.log.Warn("an earlier release already revealed protected sums; they stay withheld from now on", "data", s.path, "sums", exposedTotal)
	}

	err = s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if getUint64(meta.Get(keyDataVersion)) != dataVersion {
			return fmt.Errorf("compute the release: the data changed while it was computed")
		}
		rel, err := tx.CreateBucketIfNotExists(bucketRelease)
		if err != nil {
			return err
		}
		in, err := tx.CreateBucketIfNotExists(bucketReleaseInner)
		if err != nil {
			return err
		}
		hb, err := tx.CreateBucketIfNotExists(bucketReleaseHistory)
		if err != nil {
			return err
		}
		if !samePolicy {
			for _, b := range [][]byte{bucketRelease, bucketReleaseInner, bucketReleaseHistory} {
				if err := tx.DeleteBucket(b); err != nil {
					return err
				}
			}
			if rel, err = tx.CreateBucket(bucketRelease); err != nil {
				return err
			}
			if in, err = tx.CreateBucket(bucketReleaseInner); err != nil {
				return err
			}
			if hb, err = tx.CreateBucket(bucketReleaseHistory); err != nil {
				return err
			}
		}
		for i, id := range ids {
			win := s.cal.blockWindow(id.year)
			if err := deleteRange(rel, []byte{id.metric}, win, 1); err != nil {
				return err
			}
			if err := deleteRange(in, []byte{id.metric}, win, 1); err != nil {
				return err
			}
			keys := make([]relKey, 0, len(results[i]))
			for k := range results[i] {
				keys = append(keys, k)
			}
			slices.SortFunc(keys, cmpRelKey)
			for _, k := range keys {
				if err := rel.Put(k.bytes(), results[i][k].bytes()); err != nil {
					return err
				}
			}
			for k, v := range innerIn(now, id.metric, win) {
				if err := in.Put(k.bytes(), v.bytes()); err != nil {
					return err
				}
			}
			if err := histories[i].apply(hb, id.metric, win); err != nil {
				return err
			}
		}
		version := getUint64(meta.Get(keyReleaseVersion)) + 1
		if err := meta.Put(keyReleaseVersion, u64(version)); err != nil {
			return err
		}
		if err := meta.Put(keyReleaseDataVersion, u64(dataVersion)); err != nil {
			return err
		}
		return meta.Put(keyReleasePolicy, []byte(fingerprint))
	})
	if err != nil {
		return fmt.Errorf("store the release: %w", err)
	}
	s.log.Info("release computed", "data", s.path, "data_version", dataVersion, "blocks", len(ids), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// historyWrite is what a release changes in a block's history: reset
// drops the entries it has, entry (when not nil) is added.
type historyWrite struct {
	reset bool
	entry []byte
}

func (w historyWrite) apply(hb *bolt.Bucket, metric uint8, win periods.Window) error {
	if w.reset {
		if err := deleteRange(hb, []byte{metric}, win, 1); err != nil {
			return err
		}
	}
	if w.entry == nil {
		return nil
	}
	seq, err := hb.NextSequence()
	if err != nil {
		return err
	}
	return hb.Put(append(historyPrefix(metric, win.From), u64(seq)...), w.entry)
}

// innerIn returns the inner cells of metric in win.
func innerIn(all map[innerKey]innerVal, metric uint8, win periods.Window) map[innerKey]innerVal {
	out := map[innerKey]innerVal{}
	for k, v := range all {
		if k.metric == metric && k.atom >= win.From && k.atom <= win.To {
			out[k] = v
		}
	}
	return out
}

// deleteRange deletes the keys prefix | day(4) | ... whose day, at offset
// len(prefix), lies in win.
func deleteRange(b *bolt.Bucket, prefix []byte, win periods.Window, _ int) error {
	seek := append(slices.Clone(prefix), u32(win.From)...)
	c := b.Cursor()
	for k, _ := c.Seek(seek); k != nil; k, _ = c.Seek(seek) {
		if len(k) < len(prefix)+4 || string(k[:len(prefix)]) != string(prefix) || binary.BigEndian.Uint32(k[len(prefix):]) > win.To {
			return nil
		}
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// readRelease reads the stored release: the inner cells it was computed
// from and its cells.
func readRelease(tx *bolt.Tx) (map[innerKey]innerVal, map[relKey]relCell, error) {
	rel, in := tx.Bucket(bucketRelease), tx.Bucket(bucketReleaseInner)
	if rel == nil || in == nil {
		return nil, nil, nil
	}
	old := map[innerKey]innerVal{}
	err := in.ForEach(func(k, v []byte) error {
		if len(k) != innerKeyLen || len(v) != innerValLen {
			return &CorruptError{Problem: fmt.Sprintf("release inner key %x is malformed", k)}
		}
		old[innerKey{k[0], binary.BigEndian.Uint32(k[1:]), k[5], k[6], k[7]}] = innerVal{
			binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), binary.BigEndian.Uint64(v[16:]),
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	base := map[relKey]relCell{}
	err = rel.ForEach(func(k, v []byte) error {
		rk, ok1 := parseRelKey(k)
		rc, ok2 := parseRelCell(v)
		if !ok1 || !ok2 {
			return &CorruptError{Problem: fmt.Sprintf("release key %x is malformed", k)}
		}
		base[rk] = rc
		return nil
	})
	return old, base, err
}

// fingerprint is what the stored release depends on in the policy: a
// release computed under another policy is not a base for the next one.
func (p Policy) fingerprint() string {
	var b strings.Builder
	fmt.Fprintf(&b, "k=%d;dominance=%d;tables=", p.MinCellCount, p.DominancePercent)
	for _, m := range p.masks() {
		fmt.Fprintf(&b, "%d,", m)
	}
	b.WriteString(";periods=")
	for _, per := range p.Periods {
		fmt.Fprintf(&b, "%s:%d-%d,", per.Name, per.From, per.To)
	}
	return b.String()
}
