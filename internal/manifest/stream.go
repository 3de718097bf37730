package manifest

import (
	"bytes"
	"errors"
	"fmt"
)

// MaxStreamSize is the largest manifest stream ParseAll accepts, in bytes;
// each document in it is still at most MaxSize.
const MaxStreamSize = 2 << 20

// MaxDocuments is the most documents one stream may hold. It equals the
// scheduler's limit of workloads in one ApplyWorkloads call, so that a
// stream is always applied in one call.
const MaxDocuments = 1000

// Document is one YAML document of a manifest stream.
type Document struct {
	// Data is the document's text, aliasing the stream: from its first line
	// that is neither blank nor a comment (a directive, its --- marker or
	// its content) up to the next --- marker, or through its ... end marker.
	Data []byte
	// Line is the line of the stream, from 1, on which Data begins.
	Line int
}

// SplitDocuments cuts a YAML stream into its documents without parsing
// them. A document ends before a line that starts with --- at column 0
// followed by nothing, a space or a tab (a --- inside an indented block
// scalar is content, as it is for YAML), and after a ... end marker line.
// Documents holding only blank lines, comments and markers are left out;
// directives (%YAML) stay with the document they precede. A single JSON
// object is one document. It fails, with an *Error, only when data is
// larger than MaxStreamSize or holds more than MaxDocuments documents.
func SplitDocuments(data []byte) ([]Document, error) {
	if len(data) > MaxStreamSize {
		return nil, &Error{Fields: []FieldError{{Reason: fmt.Sprintf(
			"manifest stream is %d bytes, larger than the limit of %d bytes", len(data), MaxStreamSize)}}}
	}
	var (
		docs []Document
		// The document being read: where its first significant line
		// starts (-1 before that line), and what it holds so far.
		start, startLine                 = -1, 0
		content, marker, directive, full bool
	)
	reset := func() { start, content, marker, directive = -1, false, false, false }
	// emit ends the current document before end; one without content is
	// dropped.
	emit := func(end int) {
		if start >= 0 && content {
			if len(docs) == MaxDocuments {
				full = true
				return
			}
			docs = append(docs, Document{Data: data[start:end], Line: startLine})
		}
		reset()
	}
	begin := func(off, line int) {
		if start < 0 {
			start, startLine = off, line
		}
	}
	for off, line := 0, 1; off < len(data) && !full; line++ {
		end := len(data)
		if i := bytes.IndexByte(data[off:], '\n'); i >= 0 {
			end = off + i + 1
		}
		text := bytes.TrimRight(data[off:end], "\r\n")
		if line == 1 {
			text = bytes.TrimPrefix(text, []byte("\xef\xbb\xbf"))
		}
		switch {
		case isMarker(text, "---"):
			// Directives belong to the document that this marker opens;
			// anything else read so far ends here.
			if content || marker || !directive {
				emit(off)
			}
			begin(off, line)
			marker = true
			if rest := bytes.TrimLeft(text[3:], " \t"); len(rest) > 0 && rest[0] != '#' {
				content = true // "--- {kind: Workload, ...}"
			}
		case isMarker(text, "..."):
			if content {
				emit(end)
			} else {
				reset()
			}
		case len(text) > 0 && text[0] == '%' && !content && !marker:
			begin(off, line)
			directive = true
		case isBlankOrComment(text):
			// Leading blank lines and comments are not part of a document.
		default:
			begin(off, line)
			content = true
		}
		off = end
	}
	if !full {
		emit(len(data))
	}
	if full {
		return nil, &Error{Fields: []FieldError{{Reason: fmt.Sprintf(
			"manifest stream holds more than %d documents; apply at most %d workloads at once", MaxDocuments, MaxDocuments)}}}
	}
	return docs, nil
}

// isMarker reports whether line is the document marker m (--- or ...) at
// column 0, alone or followed by a space or tab.
func isMarker(line []byte, m string) bool {
	return bytes.HasPrefix(line, []byte(m)) && (len(line) == len(m) || line[len(m)] == ' ' || line[len(m)] == '\t')
}

func isBlankOrComment(line []byte) bool {
	t := bytes.TrimLeft(line, " \t")
	return len(t) == 0 || t[0] == '#'
}

// ParseAll decodes and validates a manifest stream: one or more YAML
// documents separated by --- lines (see SplitDocuments), or one JSON
// object. Each document is read exactly as Parse reads a manifest, and
// metadata.name must differ between documents. Every problem of every
// document is reported in one *Error, its field paths prefixed with
// documents[i] (0-based); a problem of a whole document names the line of
// the stream where the document starts, and YAML errors name lines of the
// stream. The manifests are in stream order.
func ParseAll(data []byte) ([]*Manifest, error) {
	docs, err := SplitDocuments(data)
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, &Error{Fields: []FieldError{{Reason: "manifest is empty: the stream holds no document"}}}
	}
	var (
		fields []FieldError
		out    = make([]*Manifest, 0, len(docs))
		first  = make(map[string]int, len(docs))
	)
	for i, d := range docs {
		m, err := parse(d.Data, d.Line-1)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				return nil, fmt.Errorf("documents[%d]: %w", i, err)
			}
			fields = append(fields, e.Within(fmt.Sprintf("documents[%d]", i), fmt.Sprintf("document starting at line %d", d.Line)).Fields...)
			continue
		}
		name := m.Metadata.Name
		if j, dup := first[name]; dup {
			fields = append(fields, FieldError{Field: fmt.Sprintf("documents[%d].metadata.name", i),
				Reason: fmt.Sprintf("%q is also the name of documents[%d] (line %d); each workload may appear once in a stream", name, j, docs[j].Line)})
			continue
		}
		first[name] = i
		out = append(out, m)
	}
	if len(fields) > 0 {
		return nil, &Error{Fields: fields}
	}
	return out, nil
}
