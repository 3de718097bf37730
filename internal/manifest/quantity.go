package manifest

import (
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
)

// Quantity is a resource amount as written in a manifest: "250m", "0.5" or
// "2" for CPU cores; "64Mi", "1G" or "1048576" for bytes. In YAML and JSON it
// may be written as a string or as a plain number.
type Quantity string

// UnmarshalJSON accepts a JSON string or a JSON number.
func (q *Quantity) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	switch {
	case s == "null":
		return nil
	case strings.HasPrefix(s, `"`):
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		*q = Quantity(str)
		return nil
	case s != "" && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')):
		*q = Quantity(s)
		return nil
	}
	return errors.New("quantity must be a string or a number")
}

// errNegative is the reason every negative quantity gets.
var errNegative = errors.New("must not be negative")

// maxQuantityLen bounds the text of one quantity; no sane amount needs more.
const maxQuantityLen = 64

var (
	binarySuffixes = map[string]int64{
		"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
	}
	decimalSuffixes = map[string]int64{
		"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
	}
	// A decimal number; the exponent is short so that "1e999999999" cannot
	// make big.Rat build a giant power of ten.
	numberRE = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,2})?$`)
)

// parseQuantity turns a quantity into an exact rational number of base units
// (cores or bytes). The suffixes are the Kubernetes ones: m (milli), binary
// Ki..Ei, decimal k/K..E; an exponent is allowed only without a suffix.
func parseQuantity(s string) (*big.Rat, error) {
	if s == "" {
		return nil, errors.New("must not be empty")
	}
	if len(s) > maxQuantityLen {
		return nil, errors.New("too long to be a quantity")
	}
	num, unit := splitSuffix(s)
	mult := big.NewRat(1, 1)
	switch {
	case unit == milli:
		mult = big.NewRat(1, 1000)
	case unit > 1:
		mult = big.NewRat(unit, 1)
	}
	if !numberRE.MatchString(num) || (num != s && strings.ContainsAny(num, "eE")) {
		return nil, errors.New(`not a quantity: want a number with an optional suffix such as "250m", "0.5", "64Mi" or "1G"`)
	}
	r, ok := new(big.Rat).SetString(strings.TrimPrefix(num, "+"))
	if !ok {
		return nil, errors.New("not a quantity")
	}
	r.Mul(r, mult)
	if r.Sign() < 0 {
		return nil, errNegative
	}
	return r, nil
}

// maxWholeDigits keeps a whole quantity's digits within int64 with room
// for the millicores' factor of 1,000.
const maxWholeDigits = 15

// milli is splitSuffix's unit for "m", thousandths.
const milli = 1

// splitSuffix splits a quantity into its number and its suffix's
// multiplier: unit is 0 without a suffix, milli for "m", else the binary
// (Ki..Ei) or decimal (k/K..E) multiplier.
func splitSuffix(s string) (num string, unit int64) {
	if k := len(s); k >= 2 {
		if m, ok := binarySuffixes[s[k-2:]]; ok {
			return s[:k-2], m
		}
	}
	if k := len(s); k >= 1 {
		last := s[k-1:]
		if m, ok := decimalSuffixes[last]; ok {
			return s[:k-1], m
		}
		if last == "m" {
			return s[:k-1], milli
		}
	}
	return s, 0
}

// wholeQuantity reads the common form of a quantity, whole digits with an
// optional suffix, without parseQuantity's rational arithmetic: n is the
// number and unit the suffix's multiplier (see splitSuffix). ok is false
// for every other form (signs, fractions, exponents, too many digits),
// which parseQuantity then reads and checks.
func wholeQuantity(s string) (n, unit int64, ok bool) {
	num, unit := splitSuffix(s)
	if num == "" || len(num) > maxWholeDigits {
		return 0, 0, false
	}
	for i := 0; i < len(num); i++ {
		c := num[i]
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, unit, true
}

// wholeInt64 converts r to an int64 when it is an integer that fits.
func wholeInt64(r *big.Rat, what string) (int64, error) {
	if !r.IsInt() {
		return 0, errors.New("must be a whole number of " + what)
	}
	n := r.Num()
	if !n.IsInt64() {
		return 0, errors.New("too large")
	}
	return n.Int64(), nil
}

// ParseCPU parses a CPU quantity into millicores: "250m" -> 250, "0.5" -> 500,
// "2" -> 2000. Finer precision than 1m and negative amounts are refused.
func ParseCPU(s string) (int64, error) {
	if n, unit, ok := wholeQuantity(s); ok && (unit == 0 || unit == milli) {
		// Whole cores ("2") or millicores ("250m"), as nearly every
		// manifest writes them: no rational arithmetic.
		if unit == 0 {
			return n * 1000, nil
		}
		return n, nil
	}
	r, err := parseQuantity(s)
	if err != nil {
		return 0, err
	}
	return wholeInt64(r.Mul(r, big.NewRat(1000, 1)), "millicores (at most 3 decimal places of a core)")
}

// ParseBytes parses a byte quantity: "64Mi" -> 67108864, "1G" -> 1e9,
// "512" -> 512. Fractions of a byte and negative amounts are refused.
func ParseBytes(s string) (int64, error) {
	if n, unit, ok := wholeQuantity(s); ok && unit != milli {
		if unit == 0 {
			return n, nil
		}
		if n <= math.MaxInt64/unit {
			return n * unit, nil
		}
	}
	r, err := parseQuantity(s)
	if err != nil {
		return 0, err
	}
	return wholeInt64(r, "bytes")
}

// FormatCPU writes millicores the way a user would: 2000 -> "2", 250 -> "250m".
func FormatCPU(millis int64) string {
	if millis%1000 == 0 {
		return strconv.FormatInt(millis/1000, 10)
	}
	return strconv.FormatInt(millis, 10) + "m"
}

// FormatBytes writes bytes with the largest binary suffix that divides them
// exactly: 67108864 -> "64Mi", 1536 -> "1536" (no suffix divides it), 0 -> "0".
func FormatBytes(b int64) string {
	if b == 0 {
		return "0"
	}
	for _, s := range []string{"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"} {
		if m := binarySuffixes[s]; b%m == 0 {
			return strconv.FormatInt(b/m, 10) + s
		}
	}
	return strconv.FormatInt(b, 10)
}
