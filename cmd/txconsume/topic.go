package main

import (
	"context"
	"fmt"
	"io"

	"github.com/txconsume/txconsume/txconsume/rmq"
)

const topicHelp = `
create  creates a topic (or updates its queue counts: running it again is harmless) on the master
        of every broker of a cluster found through the name servers, and waits until the name
        servers route it, so that producers and consumers started next find it.

With -retry-group G it also creates G's retry topic %RETRY%G (one queue), which the broker would
otherwise create on G's first failed delivery; a running consumer learns new routes only every
30s, so creating it up front makes the first redeliveries of a new group come on time.

Create topics before services start: a consumer refuses to start on a topic that has no route,
and brokers in production do not create topics on first use (autoCreateTopicEnable=false).`

func runTopic(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("topic", "create -topic T [-queues 8] [-retry-group G] [-cluster C] [-orderly] [-namesrv ADDR]", topicHelp, errOut)
	ns := addNamesrvFlags(fs)
	topic := fs.String("topic", "", "topic name (required)")
	queues := fs.Int("queues", rmq.DefaultTopicQueues, "read and write queues on each broker")
	retryGroup := fs.String("retry-group", "", "also create the retry topic of this consumer group")
	cluster := fs.String("cluster", rmq.DefaultCluster, "broker cluster")
	orderly := fs.Bool("orderly", false, "mark the topic as ordered")
	action, err := parseAction(fs, args)
	if err != nil {
		return err
	}
	switch action {
	case "create":
	case "":
		return usagef("missing action: create")
	default:
		return usagef("unknown action %q: want create", action)
	}
	if err := required(fs, "topic"); err != nil {
		return err
	}
	if *queues < 1 || *queues > 1024 {
		return usagef("-queues %d out of range [1, 1024]", *queues)
	}
	a, err := ns.admin()
	if err != nil {
		return err
	}
	cfg := rmq.TopicConfig{Topic: *topic, Cluster: *cluster, Queues: *queues, Orderly: *orderly, RetryGroup: *retryGroup}
	if err := a.CreateTopic(ctx, cfg); err != nil {
		return err
	}
	fmt.Fprintf(out, "topic %s created on cluster %s with %d queue(s) per broker\n", *topic, *cluster, *queues)
	if *retryGroup != "" {
		fmt.Fprintf(out, "topic %s created with 1 queue\n", rmq.RetryTopic(*retryGroup))
	}
	return nil
}
