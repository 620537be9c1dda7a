package rmq

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/internal/rocketprop"
	"github.com/txconsume/txconsume/txconsume/rmq/internal/remoting"
)

// DeadLetter is a message the consumer gave up on: its delivery failed for the last time, and the
// client sends it to the group's dead-letter topic, where no consumer of the group reads it.
type DeadLetter struct {
	// Group is the consumer group.
	Group string
	// Topic is where the message goes: DeadLetterTopic(Group).
	Topic string
	// Message is the message as the Processor saw it (Message.Topic is its original topic).
	Message *txconsume.Message
	// Err is the last failure. A message of a multi-message delivery that was itself committed
	// still goes to the dead-letter topic when its delivery failed (the client acknowledges all
	// or nothing of a delivery); Err then says so, and replaying it gives a Duplicate.
	Err error
}

// WithOnDeadLetter sets a callback called when a message is given up, at the moment its last
// delivery fails (before the client sends it to DeadLetterTopic(group)), after the log line that
// says so. It runs on the delivery's goroutine: keep it fast. Default: none.
func WithOnDeadLetter(f func(ctx context.Context, dl DeadLetter)) ListenerOption {
	return listenerOptionFunc(func(l *listenerConfig) { l.onDeadLetter = f })
}

// effectiveMaxReconsume is the limit the client applies when given n (WithMaxReconsumeTimes):
// its default of -1 means 16 in concurrent mode and no limit in orderly mode.
func effectiveMaxReconsume(n int32, orderly bool) int32 {
	switch {
	case n >= 0:
		return n
	case orderly:
		return -1 // unlimited
	default:
		return 16
	}
}

// isFinal reports whether a failed delivery of a message with reconsumeTimes earlier failures is
// its last. Concurrent mode: the broker moves a message sent back with ReconsumeTimes >= max to
// the DLQ. Orderly mode: the client counts failures itself and sends the message to the DLQ when
// ReconsumeTimes > max.
func isFinal(reconsumeTimes, maxReconsume int32, orderly bool) bool {
	if maxReconsume < 0 {
		return false
	}
	if orderly {
		return reconsumeTimes > maxReconsume
	}
	return reconsumeTimes >= maxReconsume
}

// toolsGroup is the consumer group in whose name Admin reads messages. Every broker creates it at
// start for the operator tools; reads do not commit its offsets.
const toolsGroup = "TOOLS_CONSUMER"

// pullBatch is how many messages one pull asks for.
const pullBatch = 32

// DeadLetters returns up to limit messages of group's dead-letter topic, oldest first, without
// consuming them: reads name no offset to commit, so no group's progress moves and the messages
// stay for the next reader. A group without dead letters (the topic does not exist yet) gives
// none and no error. limit <= 0 means no limit.
func (a *Admin) DeadLetters(ctx context.Context, group string, limit int) ([]*primitive.MessageExt, error) {
	if group == "" {
		return nil, errors.New("rmq: DeadLetters: empty group")
	}
	msgs, err := a.ReadTopic(ctx, DeadLetterTopic(group), limit)
	if errors.Is(err, ErrTopicNotFound) {
		return nil, nil
	}
	return msgs, err
}

// ReadTopic returns up to limit messages of topic, queue by queue from the oldest offset each
// queue keeps, without consuming them (see DeadLetters). limit <= 0 means no limit.
func (a *Admin) ReadTopic(ctx context.Context, topic string, limit int) ([]*primitive.MessageExt, error) {
	r, err := a.route(ctx, topic)
	if err != nil {
		return nil, err
	}
	masters := map[string]string{}
	for _, b := range r.BrokerDatas {
		masters[b.BrokerName] = b.master()
	}
	var out []*primitive.MessageExt
	for _, q := range r.QueueDatas {
		addr := masters[q.BrokerName]
		if addr == "" {
			return nil, fmt.Errorf("rmq: read %s: no master address for broker %s", topic, q.BrokerName)
		}
		for qid := 0; qid < q.ReadQueueNums; qid++ {
			left := 0
			if limit > 0 {
				left = limit - len(out)
				if left <= 0 {
					return out, nil
				}
			}
			msgs, err := a.readQueue(ctx, addr, q.BrokerName, topic, qid, left)
			if err != nil {
				return nil, err
			}
			out = append(out, msgs...)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StoreTimestamp < out[j].StoreTimestamp })
	return out, nil
}

// readQueue reads one queue from its minimum to its maximum offset, at most limit messages
// (limit <= 0: all).
func (a *Admin) readQueue(ctx context.Context, addr, brokerName, topic string, qid, limit int) ([]*primitive.MessageExt, error) {
	from, err := a.queueOffset(ctx, addr, brokerName, topic, qid, remoting.CodeGetMinOffset)
	if err != nil {
		return nil, err
	}
	to, err := a.queueOffset(ctx, addr, brokerName, topic, qid, remoting.CodeGetMaxOffset)
	if err != nil {
		return nil, err
	}
	var out []*primitive.MessageExt
	for offset := from; offset < to && (limit <= 0 || len(out) < limit); {
		n := pullBatch
		if limit > 0 {
			n = min(n, limit-len(out))
		}
		ext := map[string]string{
			"consumerGroup":        toolsGroup,
			"topic":                topic,
			"queueId":              strconv.Itoa(qid),
			"queueOffset":          strconv.FormatInt(offset, 10),
			"maxMsgNums":           strconv.Itoa(n),
			"sysFlag":              "4", // subscription given in the request; no offset commit, no long poll
			"commitOffset":         "0",
			"suspendTimeoutMillis": "0",
			"subscription":         "*",
			"subVersion":           strconv.FormatInt(time.Now().UnixMilli(), 10),
			"expressionType":       "TAG",
			"bname":                brokerName,
		}
		resp, err := a.client.Invoke(ctx, addr, remoting.CodePullMessage, ext, nil)
		if err != nil {
			return nil, fmt.Errorf("rmq: read %s queue %d: %w", topic, qid, err)
		}
		next, perr := strconv.ParseInt(resp.Ext["nextBeginOffset"], 10, 64)
		switch resp.Code {
		case remoting.Success:
			for _, m := range primitive.DecodeMessage(resp.Body) {
				m.Queue.Topic, m.Queue.BrokerName = topic, brokerName
				out = append(out, m)
			}
		case remoting.PullNotFound, remoting.PullOffsetMoved, remoting.PullRetryImmediatly:
		default:
			return nil, fmt.Errorf("rmq: read %s queue %d: %w", topic, qid, remoting.Expect(addr, resp, remoting.Success))
		}
		if perr != nil || next <= offset {
			break // nothing more the broker can give from here
		}
		offset = next
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (a *Admin) queueOffset(ctx context.Context, addr, brokerName, topic string, qid, code int) (int64, error) {
	resp, err := a.client.Invoke(ctx, addr, code, map[string]string{
		"topic": topic, "queueId": strconv.Itoa(qid), "bname": brokerName,
	}, nil)
	if err != nil {
		return 0, fmt.Errorf("rmq: offsets of %s queue %d: %w", topic, qid, err)
	}
	if err := remoting.Expect(addr, resp, remoting.Success); err != nil {
		return 0, fmt.Errorf("rmq: offsets of %s queue %d: %w", topic, qid, err)
	}
	n, err := strconv.ParseInt(resp.Ext["offset"], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("rmq: offsets of %s queue %d: bad answer %q", topic, qid, resp.Ext["offset"])
	}
	return n, nil
}

// Properties the broker sets on a dead letter to name its original topic: DLQ_ORIGIN_TOPIC (set
// by RocketMQ 5's pop and proxy paths) and RETRY_TOPIC (set when a consumer sends a failed
// message back, the path of the push consumers of this package).
const propDLQOriginTopic = "DLQ_ORIGIN_TOPIC"

// OriginTopic returns the topic a dead letter (or a retry copy) was first sent to, from its
// properties, or "" when they do not say.
func OriginTopic(m *primitive.MessageExt) string {
	if t := m.GetProperty(propDLQOriginTopic); t != "" {
		return t
	}
	return m.GetProperty(primitive.PropertyRetryTopic)
}

// ReplayMessage returns a copy of the dead letter m to send again to its original topic
// (OriginTopic): the body, tags, keys and user properties (trace context included), and the id
// consumers deduplicate by: UNIQ_KEY, which the producer keeps when it is set, or for a message
// sent without one the id FromMessageExt gave it. So a message whose effect was already applied
// comes back as a Duplicate, and one that never was is applied once. Every consumer group of the
// original topic receives the copy; groups that deduplicate by the same id see a Duplicate.
func ReplayMessage(m *primitive.MessageExt) (*primitive.Message, error) {
	if m == nil {
		return nil, errors.New("rmq: ReplayMessage(nil)")
	}
	topic := OriginTopic(m)
	if topic == "" {
		return nil, fmt.Errorf("rmq: message %s names no original topic (no %s or %s property)",
			m.MsgId, propDLQOriginTopic, primitive.PropertyRetryTopic)
	}
	out := primitive.NewMessage(topic, append([]byte(nil), m.Body...))
	id := FromMessageExt(m).ID
	for k, v := range m.GetProperties() {
		if rocketprop.Reserved(k) {
			continue
		}
		out.WithProperty(k, v)
	}
	if tags := m.GetTags(); tags != "" {
		out.WithTag(tags)
	}
	if keys := m.GetKeys(); keys != "" {
		out.WithProperty(primitive.PropertyKeys, keys)
	}
	out.WithProperty(primitive.PropertyUniqueClientMessageIdKeyIndex, id)
	return out, nil
}
