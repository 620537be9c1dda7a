package rmq

import (
	"strings"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txconsume/txconsume/txconsume"
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
		if _, reserved := reservedProperties[k]; reserved {
			continue
		}
		if msg.Properties == nil {
			msg.Properties = make(map[string]string, len(props))
		}
		msg.Properties[k] = v
	}
	return msg
}

// reservedProperties are the property names the client and the broker use for themselves
// (rocketmq-client-go primitive/message.go, plus broker-side names seen on delivered messages).
var reservedProperties = map[string]struct{}{
	primitive.PropertyKeys:                           {},
	primitive.PropertyTags:                           {},
	primitive.PropertyWaitStoreMsgOk:                 {},
	primitive.PropertyDelayTimeLevel:                 {},
	primitive.PropertyRetryTopic:                     {},
	primitive.PropertyTimerDeliverMS:                 {},
	primitive.PropertyRealTopic:                      {},
	primitive.PropertyRealQueueId:                    {},
	primitive.PropertyTransactionPrepared:            {},
	primitive.PropertyProducerGroup:                  {},
	primitive.PropertyMinOffset:                      {},
	primitive.PropertyMaxOffset:                      {},
	primitive.PropertyBuyerId:                        {},
	primitive.PropertyOriginMessageId:                {},
	primitive.PropertyTransferFlag:                   {},
	primitive.PropertyCorrectionFlag:                 {},
	primitive.PropertyMQ2Flag:                        {},
	primitive.PropertyReconsumeTime:                  {},
	primitive.PropertyMsgRegion:                      {},
	primitive.PropertyTraceSwitch:                    {},
	primitive.PropertyUniqueClientMessageIdKeyIndex:  {},
	primitive.PropertyMaxReconsumeTimes:              {},
	primitive.PropertyConsumeStartTime:               {},
	primitive.PropertyTranscationPreparedQueueOffset: {},
	primitive.PropertyTranscationCheckTimes:          {},
	primitive.PropertyCheckImmunityTimeInSeconds:     {},
	primitive.PropertyShardingKey:                    {},
	primitive.PropertyTransactionID:                  {},
	primitive.PropertyCorrelationID:                  {},
	primitive.PropertyMessageReplyToClient:           {},
	primitive.PropertyMessageTTL:                     {},
	primitive.PropertyReplyMessageArriveTime:         {},
	primitive.PropertyMsgType:                        {},
	primitive.PropertyCluster:                        {},
	// Set by the broker (MessageConst in the Java code base).
	"TIMER_OUT_MS":          {},
	"TIMER_ENQUEUE_MS":      {},
	"TIMER_DEQUEUE_MS":      {},
	"TIMER_ROLL_TIMES":      {},
	"TIMER_DELAY_LEVEL":     {},
	"TIMER_DEL_UNIQKEY":     {},
	"TIMER_DELAY_SEC":       {},
	"INNER_NUM":             {},
	"INNER_BASE":            {},
	"TRACE_CONTEXT":         {},
	"DLQ_ORIGIN_TOPIC":      {},
	"DLQ_ORIGIN_MESSAGE_ID": {},
}
