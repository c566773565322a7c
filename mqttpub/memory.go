package mqttpub

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"io"
)

// packAbove is the size from which a remembered retained payload is kept
// deflated: Home Assistant device configs (10–20 KB each, alike) shrink
// tenfold, and they are only read again when republishing after a
// reconnect or Home Assistant's birth.
const packAbove = 2048

// kept is a remembered retained payload: as is, or deflated with the sum
// of the original to compare new payloads against without inflating.
type kept struct {
	data   []byte
	packed bool
	sum    [32]byte
}

func keep(p []byte) kept {
	if len(p) < packAbove {
		return kept{data: bytes.Clone(p)}
	}
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	w.Write(p)
	w.Close()
	return kept{data: bytes.Clone(buf.Bytes()), packed: true, sum: sha256.Sum256(p)}
}

// same reports whether p is the payload k remembers.
func (k kept) same(p []byte) bool {
	if !k.packed {
		return bytes.Equal(k.data, p)
	}
	return len(p) >= packAbove && sha256.Sum256(p) == k.sum
}

// payload is the remembered payload itself.
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
