package mqttpub

import (
	"bytes"
	"testing"
)

// BenchmarkKeep remembers a printer state of 2.4 KB and a device config of
// 19 KB, as Publish does for every retained message.
//
//	go test -run '^$' -bench Keep -benchmem ./mqttpub
func BenchmarkKeep(b *testing.B) {
	for _, size := range []int{2400, 19000} {
		p := bytes.Repeat([]byte(`{"status":"printing","progress":42.1,"x":"abcdefgh"},`), size/52)
		b.Run(map[int]string{2400: "state", 19000: "config"}[size], func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				keep(p, false)
			}
		})
	}
}
