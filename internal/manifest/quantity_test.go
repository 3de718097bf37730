package manifest

import (
	"fmt"
	"math/big"
	"testing"
)

// exactCPU and exactBytes are ParseCPU and ParseBytes by the rational
// parser alone, the reference the whole-number shortcut must agree with.
func exactCPU(s string) (int64, error) {
	r, err := parseQuantity(s)
	if err != nil {
		return 0, err
	}
	return wholeInt64(r.Mul(r, big.NewRat(1000, 1)), "millicores (at most 3 decimal places of a core)")
}

func exactBytes(s string) (int64, error) {
	r, err := parseQuantity(s)
	if err != nil {
		return 0, err
	}
	return wholeInt64(r, "bytes")
}

// The shortcut for whole numbers gives what the rational parser gives,
// value and error, for every suffix, at the int64 edges and beside them.
func TestWholeQuantitiesAgreeWithTheExactParser(t *testing.T) {
	numbers := []string{"0", "1", "007", "250", "999999999999999", "9999999999999999", "9223372036854775807",
		"8", "8191", "8192", "9007199254740993"}
	suffixes := []string{"", "m", "k", "K", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "i", "mi", "x"}
	odd := []string{"", "m", "Mi", "+1", "-1", "1.5", "1e3", " 1", "1 ", "0x10", "１", "1.0Gi"}
	var inputs []string
	for _, n := range numbers {
		for _, s := range suffixes {
			inputs = append(inputs, n+s)
		}
	}
	inputs = append(inputs, odd...)
	for _, in := range inputs {
		for _, p := range []struct {
			name        string
			fast, exact func(string) (int64, error)
		}{{"cpu", ParseCPU, exactCPU}, {"bytes", ParseBytes, exactBytes}} {
			got, gerr := p.fast(in)
			want, werr := p.exact(in)
			if got != want || fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Errorf("%s %q: %d, %v; the exact parser: %d, %v", p.name, in, got, gerr, want, werr)
			}
		}
	}
}

func BenchmarkParseQuantity(b *testing.B) {
	for _, c := range []struct {
		name  string
		parse func(string) (int64, error)
		in    string
	}{
		{"cpu", ParseCPU, "250m"}, {"cpu", ParseCPU, "2"}, {"cpu", ParseCPU, "0.5"},
		{"bytes", ParseBytes, "64Mi"}, {"bytes", ParseBytes, "1G"}, {"bytes", ParseBytes, "1.5Gi"},
	} {
		b.Run(c.name+"/"+c.in, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.parse(c.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
