package mqttpub

import (
	"bytes"
	"compress/flate"
	"hash/maphash"
	"io"
	"sync"
)

// packAbove is the size from which a remembered retained payload is kept
// deflated: Home Assistant device configs (10–20 KB each, alike) shrink
// tenfold, and they are only read again when republishing after a
// reconnect or Home Assistant's birth.
const packAbove = 2048

// kept is a remembered retained payload: as is, deflated with the sum of
// the original to compare new payloads against without inflating, or only
// the sum when the client's Source can produce the payload again
// (renewed).
type kept struct {
	data    []byte
	packed  bool
	renewed bool
	// sentOn is the connection it was last sent on (Client.conn; 0:
	// none): a connect republishes only what its connection has not had.
	sentOn uint32
	sum    uint64
}

// keepSeed seeds the sums of kept payloads, compared within one run only:
// 64 bits tell a new payload from the last (a chance in 2^64 to skip a
// change), in 8 bytes and a tenth of the time of SHA-256.
var keepSeed = maphash.MakeSeed()

// renewAbove is the size from which a renewable payload is kept as a sum
// only: below it the sum is no smaller than the payload.
const renewAbove = 64

// packers are reused: a new flate writer allocates about 1 MB of tables,
// which made remembering a 2.4 KB printer state cost 0.8 ms.
var packers = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return &packer{w: w}
}}

type packer struct {
	w   *flate.Writer
	buf bytes.Buffer
}

// keep remembers p, which the caller does not change after: it is kept
// as is, not copied. A renewable p is kept as its sum only.
func keep(p []byte, renewable bool) kept {
	switch {
	case renewable && len(p) >= renewAbove:
		return kept{renewed: true, sum: maphash.Bytes(keepSeed, p)}
	case len(p) < packAbove:
		return kept{data: p}
	}
	pk := packers.Get().(*packer)
	defer packers.Put(pk)
	pk.buf.Reset()
	pk.w.Reset(&pk.buf)
	pk.w.Write(p)
	pk.w.Close()
	return kept{data: bytes.Clone(pk.buf.Bytes()), packed: true, sum: maphash.Bytes(keepSeed, p)}
}

// same reports whether p is the payload k remembers.
func (k kept) same(p []byte) bool {
	if !k.packed && !k.renewed {
		return bytes.Equal(k.data, p)
	}
	return maphash.Bytes(keepSeed, p) == k.sum
}

// payload is the remembered payload itself; not for a renewed one.
func (k kept) payload() []byte {
	if !k.packed {
		return k.data
	}
	p, err := io.ReadAll(flate.NewReader(bytes.NewReader(k.data)))
	if err != nil {
		panic("mqttpub: remembered payload corrupt: " + err.Error()) // we deflated it ourselves
	}
	return p
}
