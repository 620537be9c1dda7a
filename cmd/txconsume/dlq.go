package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/txconsume/txconsume/txconsume/rmq"
)

const dlqHelp = `
list    prints the messages of the group's dead-letter topic %DLQ%G, oldest first: when the broker
        stored them, their id (the key txconsume deduplicates by default), original topic, keys,
        tags, how often they were redelivered and their size. Reading consumes nothing.
replay  sends dead letters back to their original topic: -id ID[,ID...] or -all. Each copy keeps
        its id (UNIQ_KEY), keys, tags and user properties, so a txconsume consumer that already
        applied it sees a Duplicate and one that never did applies it once. Every consumer group
        of that topic receives the copy. The dead-letter topic keeps its messages (RocketMQ
        deletes them after its retention), so a replay can be repeated harmlessly.

Fix the cause of the failures (see the consumer's "failed for the last time" log lines) before
replaying, or the messages come back to the dead-letter topic.`

func runDLQ(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("dlq", "list|replay -group G [-limit N] [-id ID[,ID...] | -all] [-dry-run] [-namesrv ADDR]", dlqHelp, errOut)
	ns := addNamesrvFlags(fs)
	group := fs.String("group", "", "consumer group whose dead letters to read (required)")
	limit := fs.Int("limit", 1000, "list: at most this many messages (0: all)")
	ids := fs.String("id", "", "replay: comma-separated message ids")
	all := fs.Bool("all", false, "replay: every dead letter of the group")
	dryRun := fs.Bool("dry-run", false, "replay: print what would be sent, send nothing")
	action, err := parseAction(fs, args)
	if err != nil {
		return err
	}
	switch action {
	case "list", "replay":
	case "":
		return usagef("missing action: list or replay")
	default:
		return usagef("unknown action %q: want list or replay", action)
	}
	if err := required(fs, "group"); err != nil {
		return err
	}
	if action == "replay" && (*ids == "") == !*all {
		return usagef("replay needs exactly one of -id and -all")
	}
	a, addrs, err := ns.adminAndAddrs()
	if err != nil {
		return err
	}
	if action == "list" {
		msgs, err := a.DeadLetters(ctx, *group, *limit)
		if err != nil {
			return err
		}
		printDeadLetters(out, *group, msgs)
		return nil
	}
	msgs, err := a.DeadLetters(ctx, *group, 0)
	if err != nil {
		return err
	}
	chosen, err := chooseDeadLetters(msgs, *ids)
	if err != nil {
		return err
	}
	if *dryRun {
		for _, m := range chosen {
			fmt.Fprintf(out, "would replay %s to %s\n", rmq.FromMessageExt(m).ID, rmq.OriginTopic(m))
		}
		return nil
	}
	return replay(ctx, addrs, ns, chosen, out)
}

func printDeadLetters(out io.Writer, group string, msgs []*primitive.MessageExt) {
	fmt.Fprintf(out, "%d dead letter(s) in %s\n", len(msgs), rmq.DeadLetterTopic(group))
	if len(msgs) == 0 {
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STORED (UTC)\tID\tTOPIC\tKEYS\tTAGS\tRECONSUMED\tBYTES")
	for _, m := range msgs {
		tm := rmq.FromMessageExt(m)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n",
			time.UnixMilli(m.StoreTimestamp).UTC().Format(time.DateTime), tm.ID, rmq.OriginTopic(m),
			dash(strings.Join(tm.Keys, " ")), dash(tm.Tags), m.ReconsumeTimes, len(m.Body))
	}
	_ = tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// chooseDeadLetters picks the messages to replay: those with the given ids (all when ids is ""),
// one copy per id (the latest: a message dead-lettered again after a replay is there twice).
func chooseDeadLetters(msgs []*primitive.MessageExt, ids string) ([]*primitive.MessageExt, error) {
	want := map[string]bool{}
	for _, id := range strings.Split(ids, ",") {
		if id = strings.TrimSpace(id); id != "" {
			want[id] = true
		}
	}
	latest := map[string]int{}
	var order []string
	for i, m := range msgs {
		id := rmq.FromMessageExt(m).ID
		if len(want) > 0 && !want[id] {
			continue
		}
		if _, seen := latest[id]; !seen {
			order = append(order, id)
		}
		latest[id] = i
	}
	var missing []string
	for id := range want {
		if _, ok := latest[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("not in the dead-letter topic: %s", strings.Join(missing, ", "))
	}
	out := make([]*primitive.MessageExt, len(order))
	for i, id := range order {
		out[i] = msgs[latest[id]]
	}
	return out, nil
}

func replay(ctx context.Context, addrs []string, ns namesrvFlags, msgs []*primitive.MessageExt, out io.Writer) (err error) {
	if len(msgs) == 0 {
		fmt.Fprintln(out, "nothing to replay")
		return nil
	}
	opts := []producer.Option{
		producer.WithNsResolver(rmq.NewResolver(addrs, slog.New(slog.DiscardHandler))),
		producer.WithGroupName("txconsume-dlq-replay"),
		producer.WithRetry(2),
	}
	if ak, sk := ns.credentials(); ak != "" {
		opts = append(opts, producer.WithCredentials(primitive.Credentials{AccessKey: ak, SecretKey: sk}))
	}
	p, err := rocketmq.NewProducer(opts...)
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	if err := p.Start(); err != nil {
		return fmt.Errorf("start producer: %w", err)
	}
	defer func() { err = errors.Join(err, p.Shutdown()) }()
	for _, m := range msgs {
		rm, err := rmq.ReplayMessage(m)
		if err != nil {
			return err
		}
		id := rm.GetProperty(primitive.PropertyUniqueClientMessageIdKeyIndex)
		res, err := p.SendSync(ctx, rm)
		if err != nil {
			return fmt.Errorf("replay %s to %s: %w", id, rm.Topic, err)
		}
		if res.Status != primitive.SendOK {
			return fmt.Errorf("replay %s to %s: send status %d", id, rm.Topic, res.Status)
		}
		fmt.Fprintf(out, "replayed %s to %s\n", id, rm.Topic)
	}
	return nil
}
