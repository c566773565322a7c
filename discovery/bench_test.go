package discovery_test

import "testing"

// BenchmarkPrinterConfig renders the largest printer config (an S5 with
// two extruders, also read on the LAN): what a paced config or Home
// Assistant's birth costs per printer.
func BenchmarkPrinterConfig(b *testing.B) {
	w := buildWorld(b)
	p, ok := w.printers["ultimakersystem-4b0fc38e95e3"]
	if !ok {
		b.Fatal("no S5 in the world")
	}
	b.ReportAllocs()
	for b.Loop() {
		if m := testDisc.Printer(p, false); len(m.Payload) < 10_000 {
			b.Fatalf("config of %d bytes", len(m.Payload))
		}
	}
}
