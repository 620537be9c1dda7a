// Package rocketprop knows RocketMQ's own message property names, which the client and the
// broker use for themselves and which are therefore not user properties.
package rocketprop

import "github.com/apache/rocketmq-client-go/v2/primitive"

// Reserved reports whether name is a property name that RocketMQ's client or broker uses
// itself (rocketmq-client-go's primitive package, plus the names the broker sets, from
// MessageConst in its Java code base).
func Reserved(name string) bool {
	_, ok := reserved[name]
	return ok
}

var reserved = map[string]struct{}{
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
