package natural

import (
	"slices"
	"testing"
)

func TestCompare(t *testing.T) {
	got := []string{"Farm 10", "Farm 2", "farm 1", "Farm 100", "Farm 02", "Lab", "Farm 9b", "Farm 9a", "", "Farm"}
	slices.SortStableFunc(got, Compare)
	want := []string{"", "Farm", "farm 1", "Farm 02", "Farm 2", "Farm 9a", "Farm 9b", "Farm 10", "Farm 100", "Lab"}
	if !slices.Equal(got, want) {
		t.Errorf("sorted %q, want %q", got, want)
	}
}

func FuzzCompare(f *testing.F) {
	f.Add("Farm 10", "Farm 9")
	f.Add("a0001", "a1")
	f.Fuzz(func(t *testing.T, a, b string) {
		if Compare(a, b) != -Compare(b, a) {
			t.Fatalf("not antisymmetric: %q %q", a, b)
		}
		if (Compare(a, b) == 0) != (a == b) {
			t.Fatalf("equal only when the same: %q %q", a, b)
		}
	})
}
