package rmq

import (
	"strings"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/internal/rocketprop"
)

// FromMessageExt converts a delivered RocketMQ message to a txconsume.Message.
//
// ID is the message's UNIQ_KEY, the id the producer assigned and that stays the same across producer
// retries, redeliveries and the broker's retry topic. A message sent without UNIQ_KEY (the Go client
// sets none on batch sends) falls back to ORIGIN_MESSAGE_ID, which the broker puts on retry copies
// and which names the first stored copy, and then to the broker's offset id. Such a message gets a
// new id when the producer sends it twice; deduplicate it by a business key instead
// (txconsume.WithKeyFunc(txconsume.KeyByFirstKey)).
//
// Topic is the original topic also for redeliveries from %RETRY%<group> (the client restores it
// before the listener runs). Keys are the space-separated KEYS split into a slice. Properties hold
// the user properties only: the client's and broker's reserved properties (KEYS, TAGS, UNIQ_KEY,
// DELAY, RETRY_TOPIC, ...) are left out; the W3C trace context a producer's instrumentation
// writes ("traceparent", "tracestate") is a user property and stays. BornAt is the producer's
// born timestamp. Body is not copied. A nil m gives nil.
func FromMessageExt(m *primitive.MessageExt) *txconsume.Message {
	if m == nil {
		return nil
	}
	props := m.GetProperties()
	id := props[primitive.PropertyUniqueClientMessageIdKeyIndex]
	if id == "" {
		id = props[primitive.PropertyOriginMessageId]
	}
	if id == "" {
		id = m.MsgId
	}
	msg := &txconsume.Message{
		ID:             id,
		Topic:          m.Topic,
		Tags:           props[primitive.PropertyTags],
		Keys:           strings.Fields(props[primitive.PropertyKeys]),
		Body:           m.Body,
		ReconsumeTimes: m.ReconsumeTimes,
	}
	if m.BornTimestamp > 0 {
		msg.BornAt = time.UnixMilli(m.BornTimestamp)
	}
	for k, v := range props {
		if rocketprop.Reserved(k) {
			continue
		}
		if msg.Properties == nil {
			msg.Properties = make(map[string]string, len(props))
		}
		msg.Properties[k] = v
	}
	return msg
}
