// Package remoting speaks the few requests of RocketMQ's remoting protocol that the operator API
// of package rmq needs and the client library does not export: topic routes and cluster
// information from the name server, topic creation, queue offsets and offset-addressed pulls from
// a broker. Each call uses a connection of its own: these are rare administrative requests, and a
// connection per call leaves no goroutine behind.
//
// The frame is the one of the Java and Go clients: a 4-byte big-endian length of what follows, a
// 4-byte word holding the header's serialisation type (0, JSON) in its high byte and the header's
// length in the other three, the JSON header, then the body.
package remoting

import (
	"context"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // RocketMQ's ACL signature is defined as HMAC-SHA1
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Request codes used here (RequestCode in the Java code base).
const (
	CodePullMessage          = 11
	CodeUpdateAndCreateTopic = 17
	CodeGetMaxOffset         = 30
	CodeGetMinOffset         = 31
	CodeGetRouteInfoByTopic  = 105
	CodeGetBrokerClusterInfo = 106
)

// Response codes used here (ResponseCode in the Java code base).
const (
	Success             = 0
	TopicNotExist       = 17
	PullNotFound        = 19
	PullRetryImmediatly = 20
	PullOffsetMoved     = 21
)

// maxFrame bounds a response frame; a pull of 32 messages of the broker's 4 MiB maximum fits.
const maxFrame = 256 << 20

// DefaultTimeout bounds one call when the context has no earlier deadline.
const DefaultTimeout = 5 * time.Second

// Client sends requests. The zero value works without ACL.
type Client struct {
	// AccessKey and SecretKey sign requests for brokers and name servers with ACL enabled.
	AccessKey, SecretKey string
	// Timeout bounds each call (dial, write, read); 0 means DefaultTimeout.
	Timeout time.Duration
}

// Response is a server's answer.
type Response struct {
	Code   int
	Remark string
	Ext    map[string]string
	Body   []byte
}

// Error is a response whose code is not the one the caller expected.
type Error struct {
	Addr   string
	Code   int
	Remark string
}

func (e *Error) Error() string {
	if e.Remark == "" {
		return fmt.Sprintf("%s answered code %d", e.Addr, e.Code)
	}
	return fmt.Sprintf("%s answered code %d: %s", e.Addr, e.Code, strings.TrimSpace(e.Remark))
}

// DialError means the server could not be reached at all, as opposed to a server that answered
// badly.
type DialError struct {
	Addr string
	Err  error
}

func (e *DialError) Error() string { return fmt.Sprintf("connect to %s: %v", e.Addr, e.Err) }
func (e *DialError) Unwrap() error { return e.Err }

type header struct {
	Code      int               `json:"code"`
	Language  string            `json:"language"`
	Version   int               `json:"version"`
	Opaque    int32             `json:"opaque"`
	Flag      int               `json:"flag"`
	Remark    string            `json:"remark,omitempty"`
	ExtFields map[string]string `json:"extFields,omitempty"`
}

var opaque atomic.Int32

// version is the protocol version the Go client announces (V4_9_x); brokers decide some header
// fields by it, and 5.x brokers accept it.
const version = 317

// Invoke sends one request to addr and returns the response, whatever its code.
func (c *Client) Invoke(ctx context.Context, addr string, code int, ext map[string]string, body []byte) (*Response, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &DialError{Addr: addr, Err: err}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	fields := make(map[string]string, len(ext)+2)
	for k, v := range ext {
		fields[k] = v
	}
	if c.AccessKey != "" {
		c.sign(fields, body)
	}
	h := header{Code: code, Language: "GO", Version: version, Opaque: opaque.Add(1), ExtFields: fields}
	if err := writeFrame(conn, h, body); err != nil {
		return nil, fmt.Errorf("send to %s: %w", addr, err)
	}
	for {
		rh, rbody, err := readFrame(conn)
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("read from %s: %w", addr, err)
		}
		if rh.Flag&1 == 0 || rh.Opaque != h.Opaque {
			continue // a request from the server, or a stray answer: not ours
		}
		return &Response{Code: rh.Code, Remark: rh.Remark, Ext: rh.ExtFields, Body: rbody}, nil
	}
}

// sign adds RocketMQ's ACL signature: HMAC-SHA1 over the values of the fields sorted by name
// (AccessKey included), followed by the body.
func (c *Client) sign(fields map[string]string, body []byte) {
	fields["AccessKey"] = c.AccessKey
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	mac := hmac.New(sha1.New, []byte(c.SecretKey))
	for _, k := range names {
		mac.Write([]byte(fields[k]))
	}
	mac.Write(body)
	fields["Signature"] = base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func writeFrame(w io.Writer, h header, body []byte) error {
	hdr, err := json.Marshal(h)
	if err != nil {
		return err
	}
	buf := make([]byte, 8, 8+len(hdr)+len(body))
	binary.BigEndian.PutUint32(buf[0:4], uint32(4+len(hdr)+len(body))) //nolint:gosec // bounded by the caller's sizes
	binary.BigEndian.PutUint32(buf[4:8], uint32(len(hdr))&0xFFFFFF)    //nolint:gosec // JSON serialisation type 0
	buf = append(buf, hdr...)
	buf = append(buf, body...)
	_, err = w.Write(buf)
	return err
}

func readFrame(r io.Reader) (header, []byte, error) {
	var h header
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return h, nil, err
	}
	size := binary.BigEndian.Uint32(pre[0:4])
	word := binary.BigEndian.Uint32(pre[4:8])
	if word>>24 != 0 {
		return h, nil, fmt.Errorf("unsupported header serialisation %d", word>>24)
	}
	hlen := word & 0xFFFFFF
	if size > maxFrame || hlen+4 > size {
		return h, nil, fmt.Errorf("bad frame: length %d, header %d", size, hlen)
	}
	rest := make([]byte, size-4)
	if _, err := io.ReadFull(r, rest); err != nil {
		return h, nil, err
	}
	if err := json.Unmarshal(rest[:hlen], &h); err != nil {
		return h, nil, fmt.Errorf("bad header: %w", err)
	}
	return h, rest[hlen:], nil
}

// QuoteIntKeys turns the bare integer object keys of fastjson's output ({0:"127.0.0.1:10911"},
// as brokers and name servers write broker address tables) into strings, so encoding/json can
// decode the document. Strings are copied as they are.
func QuoteIntKeys(data []byte) []byte {
	out := make([]byte, 0, len(data)+16)
	inString, escaped := false, false
	expectKey := false
	for i := 0; i < len(data); i++ {
		ch := data[i]
		if inString {
			out = append(out, ch)
			switch {
			case escaped:
				escaped = false
			case ch == '\\':
				escaped = true
			case ch == '"':
				inString = false
			}
			continue
		}
		switch {
		case ch == '"':
			inString, expectKey = true, false
		case ch == '{' || ch == ',':
			expectKey = true
		case expectKey && (ch == '-' || (ch >= '0' && ch <= '9')):
			j := i + 1
			for j < len(data) && data[j] >= '0' && data[j] <= '9' {
				j++
			}
			k := j
			for k < len(data) && (data[k] == ' ' || data[k] == '\n' || data[k] == '\t' || data[k] == '\r') {
				k++
			}
			if k < len(data) && data[k] == ':' {
				out = append(out, '"')
				out = append(out, data[i:j]...)
				out = append(out, '"')
				i = j - 1
				expectKey = false
				continue
			}
			expectKey = false
		case ch != ' ' && ch != '\n' && ch != '\t' && ch != '\r':
			expectKey = false
		}
		out = append(out, ch)
	}
	return out
}

// Expect returns an *Error for resp when its code is not want.
func Expect(addr string, resp *Response, want int) error {
	if resp.Code == want {
		return nil
	}
	return &Error{Addr: addr, Code: resp.Code, Remark: resp.Remark}
}
