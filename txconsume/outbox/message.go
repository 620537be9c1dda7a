package outbox

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txconsume/txconsume/txconsume/internal/rocketprop"
)

// Message is a message to publish to RocketMQ once the transaction that enqueues it commits.
type Message struct {
	// Topic is the RocketMQ topic: 1 to 127 letters, digits, '%', '|', '_' or '-'. Required.
	Topic string
	// Tags is the message's tag (RocketMQ TAGS), which consumers filter on. Optional.
	Tags string
	// Keys are business keys (RocketMQ KEYS), indexed by the broker for lookups and used by
	// txconsume.KeyByFirstKey. Each is non-empty, without spaces. Optional.
	Keys []string
	// ShardingKey, when set, keeps order: messages with the same sharding key reach the broker
	// in the order they were enqueued and all go to one queue of the topic, the queue
	// producer.NewHashQueueSelector would choose, so an orderly consumer sees them in order.
	// Optional; at most 255 bytes.
	ShardingKey string
	// Body is the payload, at most MaxBodySize bytes.
	Body []byte
	// Properties are user properties. Names must not be RocketMQ's own (KEYS, TAGS, UNIQ_KEY,
	// DELAY, ...); names and values are non-empty UTF-8 without control characters. Optional.
	Properties map[string]string
}

// Limits Enqueue enforces, so that every message it stores can be sent.
const (
	// MaxBodySize is the largest body Enqueue accepts: the broker's default maxMessageSize of
	// 4 MiB, less 64 KiB. The Go client compresses bodies of 4 KiB and more before sending and
	// the broker checks the compressed size, which exceeds the original for data that does not
	// compress; the margin covers that growth.
	MaxBodySize = 4<<20 - 64<<10
	// MaxPropertiesSize bounds the encoded properties of one message: user properties plus the
	// tags, keys, sharding key, id and trace context the outbox sends, each encoded as
	// name, 0x01, value, 0x02. The broker refuses more than 32,767 bytes of properties; the
	// margin leaves room for the properties it adds itself, several on a retry.
	MaxPropertiesSize = 30 << 10
	// MaxTopicLen is RocketMQ's limit on topic names.
	MaxTopicLen = 127
	// MaxShardingKeyLen and MaxTagsLen are the sizes of their columns.
	MaxShardingKeyLen = 255
	MaxTagsLen        = 255
)

// ErrInvalidMessage is wrapped by the error Enqueue returns for a message that could not be
// sent; the error names the message's index and what is wrong.
var ErrInvalidMessage = errors.New("outbox: invalid message")

// Trace context properties, written when the enqueuing context carries a span (W3C Trace
// Context, as the OpenTelemetry RocketMQ instrumentations write them).
const (
	PropertyTraceParent = "traceparent"
	PropertyTraceState  = "tracestate"
)

var validTopic = regexp.MustCompile(`^[%|a-zA-Z0-9_-]+$`)

// notAllowedSendTopics are the system topics the broker refuses sends to
// (TopicValidator.NOT_ALLOWED_SEND_TOPIC_SET in RocketMQ 5).
var notAllowedSendTopics = map[string]bool{
	"SCHEDULE_TOPIC_XXXX":         true,
	"RMQ_SYS_TRANS_HALF_TOPIC":    true,
	"RMQ_SYS_TRANS_OP_HALF_TOPIC": true,
	"TRANS_CHECK_MAX_TIME_TOPIC":  true,
	"SELF_TEST_TOPIC":             true,
	"OFFSET_MOVED_EVENT":          true,
}

// validate checks m against what the broker and the client accept. It returns the reason
// without the message's index.
func (m *Message) validate() error {
	switch {
	case m.Topic == "":
		return errors.New("topic is empty")
	case len(m.Topic) > MaxTopicLen:
		return fmt.Errorf("topic is %d bytes, more than %d", len(m.Topic), MaxTopicLen)
	case !validTopic.MatchString(m.Topic):
		return fmt.Errorf("topic %q has characters RocketMQ does not allow (only letters, digits, %%, |, _ and -)", m.Topic)
	case notAllowedSendTopics[m.Topic]:
		return fmt.Errorf("topic %q is a RocketMQ system topic that refuses sends", m.Topic)
	case len(m.Body) > MaxBodySize:
		return fmt.Errorf("body is %d bytes, more than MaxBodySize (%d)", len(m.Body), MaxBodySize)
	case len(m.Tags) > MaxTagsLen:
		return fmt.Errorf("tags are %d bytes, more than %d", len(m.Tags), MaxTagsLen)
	case len(m.ShardingKey) > MaxShardingKeyLen:
		return fmt.Errorf("sharding key is %d bytes, more than %d", len(m.ShardingKey), MaxShardingKeyLen)
	}
	if err := checkText("tags", m.Tags); err != nil {
		return err
	}
	if strings.Contains(m.Tags, "||") {
		return fmt.Errorf("tags %q contain \"||\", which separates tags in subscriptions", m.Tags)
	}
	if err := checkText("sharding key", m.ShardingKey); err != nil {
		return err
	}
	for i, k := range m.Keys {
		if k == "" {
			return fmt.Errorf("key %d is empty", i)
		}
		if strings.Contains(k, " ") {
			return fmt.Errorf("key %q contains a space, which separates keys", k)
		}
		if err := checkText("key", k); err != nil {
			return err
		}
	}
	for name, value := range m.Properties {
		if name == "" || value == "" {
			return fmt.Errorf("property %q: names and values must not be empty", name)
		}
		if rocketprop.Reserved(name) {
			return fmt.Errorf("property name %q is reserved by RocketMQ; use the Message fields", name)
		}
		if err := checkText("property name", name); err != nil {
			return err
		}
		if err := checkText("value of property "+name, value); err != nil {
			return err
		}
	}
	return nil
}

// checkText rejects text that would not survive the trip: invalid UTF-8 (Java consumers decode
// properties as UTF-8) and control characters (0x01 and 0x02 separate properties on the wire).
func checkText(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%s %q contains control characters", what, s)
	}
	return nil
}

// propertiesSize is the encoded size of the properties the relay sends for a message with these
// fields: each property is name 0x01 value 0x02.
func propertiesSize(props map[string]string, tags, keys, shardingKey, id string) int {
	n := 0
	add := func(name, value string) {
		if value != "" {
			n += len(name) + len(value) + 2
		}
	}
	for k, v := range props {
		add(k, v)
	}
	add(primitive.PropertyTags, tags)
	add(primitive.PropertyKeys, keys)
	add(primitive.PropertyShardingKey, shardingKey)
	add(primitive.PropertyUniqueClientMessageIdKeyIndex, id)
	return n
}
