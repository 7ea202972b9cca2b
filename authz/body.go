package authz

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/xml"
	"io"
	"mime"
	"mime/multipart"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// Reading a body the way the upstream may read it. A deny-list must see every value the upstream could act on,
// so a body is read as every format it may be taken for (JSON by its first byte or a JSON Content-Type, XML
// likewise, a form by its Content-Type, protobuf for gRPC, gRPC-Web and Connect), every occurrence of a field
// counts (duplicate JSON keys, repeated form keys, repeated protobuf fields), and a body deact cannot read whole
// is reported so that the decision refuses instead of allowing what it did not see.

// bodyStatus says how much of a body deact could read.
type bodyStatus uint8

const (
	bodyRead       bodyStatus = iota // read whole, or nothing in it is for deact to read
	bodyIncomplete                   // the proxy sent a prefix, or none of an announced body
	bodyUnreadable                   // compressed, malformed, or in an encoding deact does not read
)

// HeaderPartialBody is the header Envoy's ext_authz adds to a Check when with_request_body has
// allow_partial_message set: "true" when the body was cut at max_request_bytes.
const HeaderPartialBody = "x-envoy-auth-partial-body"

// bodyIncomplete reports whether req.Body is less than the request's body: Envoy said so, the HTTP check
// endpoint cut it, or it is shorter than the Content-Length the client announced. Every value of a repeated
// header counts.
func (r *Request) bodyIncomplete() bool {
	if r.truncated {
		return true
	}
	l := list{r.Headers[HeaderPartialBody]}
	for v, ok := l.next(); ok; v, ok = l.next() {
		if strings.EqualFold(v, "true") {
			return true
		}
	}
	l = list{r.Headers["content-length"]}
	for v, ok := l.next(); ok; v, ok = l.next() {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > int64(len(r.Body)) {
			return true
		}
	}
	return false
}

// encoded reports whether the body carries a Content-Encoding other than identity: deact does not inflate
// bodies (a decompression bomb costs the gateway, and the upstream may not inflate either), so such a body is
// unreadable where the decision depends on it.
func (r *Request) encoded() bool {
	l := list{r.Headers["content-encoding"]}
	for v, ok := l.next(); ok; v, ok = l.next() {
		if !strings.EqualFold(v, "identity") {
			return true
		}
	}
	return false
}

// maxBodyItems bounds the fields a body walk visits, so a hostile body costs bounded work. A body with more is
// not read whole: where the decision depends on it, it is refused like a cut one (fields after the bound could
// name anything).
const maxBodyItems = 1 << 16

// bodyWalker calls f for every (name, scalar value) of a body, until f returns true. Names are as the body
// spells them; callers compare them with fieldIs.
type bodyWalker struct {
	f         func(k, v string) bool
	budget    int
	done      bool
	exhausted bool // the body has more fields than maxBodyItems, or a field too long to read
}

func (w *bodyWalker) emit(k, v string) bool {
	if w.done {
		return true
	}
	if w.budget <= 0 {
		w.exhausted = true
		return true
	}
	w.budget--
	w.done = w.f(k, v)
	return w.done
}

// bodyInput is what reading a body takes of its request: the body and the headers that say how to read it.
// A decision looks each up at most once, however many of its sources read the body: typed fills the media
// type, load the rest (what walkBody needs).
type bodyInput struct {
	typed, loaded bool
	body          string
	contentType   string
	path          string // the request path, whose last segment is the method of a gRPC or Connect body
	incomplete    bool   // less than the whole body (Request.bodyIncomplete)
	encoded       bool   // a Content-Encoding other than identity; looked up only for a non-empty body
}

// typedFrom fills in's body, path and media type from req, once; it returns in.
func (in *bodyInput) typedFrom(req *Request) *bodyInput {
	if !in.typed {
		in.typed, in.body, in.contentType, in.path = true, req.Body, req.Headers["content-type"], req.Path
	}
	return in
}

// load fills all of in from req, once; it returns in.
func (in *bodyInput) load(req *Request) *bodyInput {
	if !in.loaded {
		in.typedFrom(req)
		in.loaded, in.incomplete = true, req.bodyIncomplete()
		if req.Body != "" {
			in.encoded = req.encoded()
		}
	}
	return in
}

// formDeclared reports whether the request says its body is a form: the upstream (Go's ParseForm, a servlet's
// getParameter) reads the body only then.
func (in *bodyInput) formDeclared() bool {
	return containsFold(in.contentType, "application/x-www-form-urlencoded")
}

// isForm reports whether there is a form body to read.
func (in *bodyInput) isForm() bool { return in.body != "" && in.formDeclared() }

// walkBody reads in.body as every format it may be (see the top of this file) and calls f for each field. It
// reports bodyIncomplete when the body is not whole (the prefix is still walked, so a deny in it is found),
// bodyUnreadable when it is compressed or no format it was read as parses, and bodyRead otherwise, including
// for an empty body or one in no format deact reads (the upstream would not read it either).
func walkBody(in *bodyInput, f func(k, v string) bool) bodyStatus {
	incomplete := in.incomplete
	body := strings.TrimPrefix(in.body, "\ufeff")
	body = strings.TrimLeft(body, " \t\r\n")
	if body == "" {
		if incomplete {
			return bodyIncomplete
		}
		return bodyRead
	}
	if in.encoded {
		return bodyUnreadable
	}
	w := &bodyWalker{f: f, budget: maxBodyItems}
	ct := in.contentType
	tried, parsed := false, false
	try := func(ok bool) {
		tried = true
		parsed = parsed || ok
	}
	if isGRPCMedia(ct) || containsFold(ct, "application/proto") || containsFold(ct, "application/x-protobuf") ||
		containsFold(ct, "application/connect+") {
		return walkRPC(in, w)
	}
	if body[0] == '{' || body[0] == '[' || containsFold(ct, "json") {
		try(walkJSON(body, w))
	}
	if !w.done && (body[0] == '<' || containsFold(ct, "xml")) {
		try(walkXML(body, w))
	}
	if !w.done && containsFold(ct, "application/x-www-form-urlencoded") {
		try(true) // a form always parses: Go's ParseForm and servlet containers skip pairs they cannot decode
		it := params{body}
		for k, v, ok := it.next(); ok && !w.done; k, v, ok = it.next() {
			key, ok1 := unescape(k)
			val, ok2 := unescape(v)
			if ok1 && ok2 {
				w.emit(key, val)
			}
		}
	}
	if !w.done && containsFold(ct, "multipart/form-data") {
		try(walkMultipart(body, ct, w))
	}
	switch {
	case w.done:
		return bodyRead // denied: the rest does not matter
	case incomplete, w.exhausted:
		return bodyIncomplete
	case tried && !parsed:
		return bodyUnreadable
	}
	return bodyRead
}

// fieldIs compares a body field name with a canonical one the way any of the upstreams would accept it: case
// folded, '_' and '-' ignored, so "loginName" (protojson's JSON name), "login_name" (its proto name), "LoginName"
// (Go's encoding/json folds case) and "user-name" all compare equal to "loginname" or "username".
func fieldIs(k, canon string) bool {
	j := 0
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c == '_' || c == '-' {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if j >= len(canon) || canon[j] != c {
			return false
		}
		j++
	}
	return j == len(canon)
}

// walkJSON walks every JSON value in body, in sequence (a decoder that reads the first and ignores the rest and
// one that reads them all are both covered), token by token so that every occurrence of a duplicate key is seen
// (Go's encoding/json keeps the last, other parsers the first; protojson rejects the body). The key of a scalar
// inside an array is the array's key. It reports whether at least the first value parsed.
func walkJSON(body string, w *bodyWalker) bool {
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	type frame struct {
		obj     bool
		key     string
		wantKey bool
	}
	var stack []frame
	values := 0
	for !w.done {
		tok, err := dec.Token()
		if err != nil {
			return values > 0 // the first value is what a decoder that stops there reads
		}
		if len(stack) > 64 {
			return false
		}
		key := ""
		if n := len(stack); n > 0 {
			key = stack[n-1].key
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				stack = append(stack, frame{obj: t == '{', key: key, wantKey: t == '{'})
				continue
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].wantKey {
				stack[n-1].key, stack[n-1].wantKey = t, false
				continue
			}
			w.emit(key, t)
		case json.Number:
			w.emit(key, t.String())
		}
		if n := len(stack); n > 0 && stack[n-1].obj {
			stack[n-1].wantKey = true
		}
		if len(stack) == 0 {
			values++
		}
		if w.budget <= 0 {
			w.exhausted = true
			return true
		}
	}
	return true
}

// walkXML walks the attributes and the text of the elements of an XML body. It reports whether the document
// parsed to its end: an unterminated comment or element (a body cut at a proxy's limit) does not.
func walkXML(body string, w *bodyWalker) bool {
	dec := xml.NewDecoder(strings.NewReader(body))
	dec.Strict = false
	var elem string
	depth, elems := 0, 0
	for !w.done && w.budget > 0 {
		tok, err := dec.Token()
		if err == io.EOF {
			return elems > 0 && depth == 0
		}
		if err != nil {
			return false
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			elems++
			elem = t.Name.Local
			for _, at := range t.Attr {
				if w.emit(at.Name.Local, at.Value) {
					return true
				}
			}
		case xml.CharData:
			if s := string(bytes.TrimSpace(t)); s != "" && elem != "" {
				w.emit(elem, s)
			}
		case xml.EndElement:
			depth--
			elem = ""
		case xml.Directive:
			// Go's decoder does not expand entities a DOCTYPE declares; the upstream's parser may, so a value
			// could hide behind one.
			if bytes.Contains(t, []byte("ENTITY")) {
				return false
			}
		}
	}
	if w.budget <= 0 {
		w.exhausted = true
	}
	return true
}

// walkMultipart walks the fields of a multipart/form-data body (a Next.js server action posts its form so, the
// login v2 UI among them): each part that is not a file is a field, and a field whose value is JSON (the
// encoded arguments of a server action) is walked as JSON too. It reports whether the body parsed to its end.
func walkMultipart(body, ct string, w *bodyWalker) bool {
	_, params, err := mime.ParseMediaType(ct)
	if err != nil || params["boundary"] == "" {
		return false
	}
	mr := multipart.NewReader(strings.NewReader(body), params["boundary"])
	for !w.done && w.budget > 0 {
		part, err := mr.NextPart()
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
		if part.FileName() != "" {
			continue
		}
		v, err := io.ReadAll(io.LimitReader(part, 1<<20+1))
		if err != nil {
			return false
		}
		if len(v) > 1<<20 {
			w.exhausted = true
			return true
		}
		if w.emit(part.FormName(), string(v)) {
			return true
		}
		if t := strings.TrimSpace(string(v)); t != "" && (t[0] == '{' || t[0] == '[') {
			walkJSON(t, w)
		}
	}
	return true
}

// isGRPCMedia reports whether a Content-Type is gRPC or gRPC-Web (any codec).
func isGRPCMedia(ct string) bool { return containsFold(ct, "application/grpc") }

// rpcLoginFields says where the login names of a ZITADEL SessionService request are in its protobuf encoding
// (zitadel.session.v2 and v2beta session_service.proto): the message path to the CheckUser, whose field 1 is
// user_id and field 2 login_name.
func rpcLoginFields(method string) []protowire.Number {
	switch method {
	case "CreateSession":
		return []protowire.Number{1, 1} // CreateSessionRequest.checks (1) → Checks.user (1)
	case "SetSession":
		return []protowire.Number{3, 1} // SetSessionRequest.checks (3) → Checks.user (1)
	}
	return nil
}

// walkRPC reads a gRPC, gRPC-Web or Connect body: length-prefixed frames (gRPC, gRPC-Web, Connect streaming;
// gRPC-Web text is base64 of them) or one bare message (Connect unary, application/proto), each message
// protobuf or JSON by the codec. Protobuf messages are decoded for the fields of the methods deact reads
// (rpcLoginFields), reported as "userId" and "loginName". A compressed frame is unreadable; a frame longer than
// the body is incomplete when the body was cut and unreadable otherwise.
func walkRPC(in *bodyInput, w *bodyWalker) bodyStatus {
	incomplete, ct := in.incomplete, in.contentType
	body := []byte(in.body)
	if containsFold(ct, "grpc-web-text") {
		d, err := decodeGRPCWebText(in.body)
		if err != nil {
			if incomplete {
				return bodyIncomplete
			}
			return bodyUnreadable
		}
		body = d
	}
	jsonCodec := containsFold(ct, "json")
	method := rpcMethod(in.path)
	fields := rpcLoginFields(method)
	read := func(msg []byte) bool {
		if jsonCodec {
			return walkJSON(string(msg), w)
		}
		if fields == nil {
			return true // a method whose body deact does not read
		}
		return walkProto(msg, fields, w) == nil
	}
	framed := isGRPCMedia(ct) || containsFold(ct, "application/connect+")
	if !framed {
		ok := read(body)
		switch {
		case w.done:
			return bodyRead
		case incomplete, w.exhausted:
			return bodyIncomplete
		case !ok:
			return bodyUnreadable
		}
		return bodyRead
	}
	for len(body) > 0 && !w.done {
		if len(body) < 5 {
			return shortFrame(incomplete)
		}
		flags, n := body[0], binary.BigEndian.Uint32(body[1:5])
		body = body[5:]
		if uint64(n) > uint64(len(body)) {
			read(body) // a prefix may still name a deactivated subject
			if w.done {
				return bodyRead
			}
			return shortFrame(incomplete)
		}
		msg := body[:n]
		body = body[n:]
		switch {
		case flags&0x80 != 0: // gRPC-Web trailers, Connect end-of-stream: no request fields
			continue
		case flags&0x01 != 0:
			return bodyUnreadable // compressed (grpc-encoding, connect-content-encoding): not inflated
		}
		if !read(msg) && !w.done {
			return bodyUnreadable
		}
	}
	if (incomplete || w.exhausted) && !w.done {
		return bodyIncomplete
	}
	return bodyRead
}

func shortFrame(incomplete bool) bodyStatus {
	if incomplete {
		return bodyIncomplete
	}
	return bodyUnreadable
}

// decodeGRPCWebText decodes a grpc-web-text body: base64 of the frames, where each chunk may carry its own
// padding.
func decodeGRPCWebText(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	var out []byte
	for s != "" {
		end := strings.IndexByte(s, '=')
		chunk := s
		if end >= 0 {
			for end < len(s) && s[end] == '=' {
				end++
			}
			chunk, s = s[:end], s[end:]
		} else {
			s = ""
		}
		d, err := base64.StdEncoding.DecodeString(chunk)
		if err != nil {
			return nil, err
		}
		out = append(out, d...)
	}
	return out, nil
}

// walkProto follows path through nested messages (every occurrence of each field: protobuf merges repeated
// occurrences of a message field) and emits the CheckUser fields at its end: 1 as "userId", 2 as "loginName".
func walkProto(msg []byte, path []protowire.Number, w *bodyWalker) error {
	for len(msg) > 0 && !w.done {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return protowire.ParseError(n)
		}
		msg = msg[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, msg)
			if n < 0 {
				return protowire.ParseError(n)
			}
			msg = msg[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(msg)
		if n < 0 {
			return protowire.ParseError(n)
		}
		msg = msg[n:]
		switch {
		case len(path) > 0 && num == path[0]:
			if err := walkProto(v, path[1:], w); err != nil {
				return err
			}
		case len(path) == 0 && num == 1:
			w.emit("userId", string(v))
		case len(path) == 0 && num == 2:
			w.emit("loginName", string(v))
		}
	}
	return nil
}

// rpcMethod returns the method name of a gRPC or Connect path: its last segment, canonical, without a trailing
// slash or ";params". A gRPC server routes only the exact path, but deact matched the route on those readings
// too, so it reads the body on them as well.
func rpcMethod(p string) string {
	p = canonicalPath(p)
	if alt, ok := servletPath(p); ok {
		p = alt
	}
	p = strings.TrimRight(p, "/")
	return p[strings.LastIndexByte(p, '/')+1:]
}
