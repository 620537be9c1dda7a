// Package rmq connects txconsume to RocketMQ through github.com/apache/rocketmq-client-go/v2.
//
// A Consumer owns a push consumer and hands every delivery to a Processor (a *txconsume.Processor,
// or the status-mode processor of txconsume/idem):
//
//	p, err := txconsume.New(db, "billing", handler)
//	c, err := rmq.NewConsumer(p, // the consumer group is the Processor's: "billing"
//		rmq.WithNameServers("rocketmq-namesrv:9876"),
//		rmq.WithSubscription("orders", "paid"),
//		rmq.WithRetryDelayLevel(2), // a failed delivery comes back after 5s
//	)
//	err = c.Start() // checks the schema, the name server and the topic first
//	...
//	err = c.Shutdown(ctx) // waits for in-flight transactions, then closes the client
//
// A *txconsume.Processor gets deliveries of up to DefaultBatchMaxSize (32) messages, each consumed
// in one transaction by ProcessBatch, which splits a transaction that loses a lock conflict on hot
// rows and then runs fewer batch transactions at once; see WithBatchMaxSize for the trade-off.
//
// Listener and OrderlyListener are the same mapping as plain callbacks, for code that manages its own
// rocketmq.PushConsumer.
//
// # Operating it
//
//   - Start refuses to start a consumer that could only fail: Check (also usable from a readiness
//     probe) verifies the Processor (database reachable, schema migrated), that a name server
//     answers, and that every topic is routed, and each error names its cause and its remedy.
//   - Name servers may be given by host name (NewResolver does the same for the client's producers).
//   - A message's last failed delivery is logged as given up, with the dead-letter topic, and
//     WithOnDeadLetter is called; Admin.DeadLetters reads %DLQ%<group> without consuming it and
//     ReplayMessage prepares a dead letter for its original topic, with its id kept, so that an
//     applied message comes back as a Duplicate (the txconsume CLI's "dlq list" and "dlq replay").
//   - Admin.CreateTopic creates topics (and a group's retry topic) on the brokers of a cluster
//     (the CLI's "topic create").
//   - Every log line names the group; a discard is one line with its reason; status mode's
//     expected in-progress conflicts are debug lines.
//   - A delivery that failed only because the database (or the status mode's store) could not be
//     reached is run again in place until it answers, for up to WithOutageRetry, instead of
//     spending a redelivery per attempt; the outage is logged when it begins and when it ends.
//   - A delivery whose handler does not return (a database that stopped answering without closing
//     its connections) is logged as stalled after WithStallWarning.
//
// # What the client does, and what this package does about it
//
//   - Only ConsumeSuccess acknowledges. Any other result sends every message of the delivery back to
//     the broker (%RETRY%<group>), with the delay level the listener put in the callback context
//     (ConsumeConcurrentlyContext.DelayLevelWhenNextConsume; 0 means the broker's 3+ReconsumeTimes).
//     AckIndex is ignored, so a multi-message delivery is acknowledged all or nothing: the messages
//     of a failed batch that were committed come back, and txconsume reports them as duplicates.
//   - After MaxReconsumeTimes failures the broker moves a message to %DLQ%<group>.
//   - Orderly consumption retries a failed delivery after the SuspendCurrentQueueTimeMillis of the
//     callback context, whose default of -1 retries at once in a tight loop; OrderlyListener always
//     sets it (WithSuspendTime).
//   - The client's Shutdown returns while callbacks still run and then ignores their results; Consumer
//     drains first (see Consumer.Shutdown).
//   - The client generates a UNIQ_KEY per message on single sends but none on batch sends; batch-sent
//     messages get broker offset ids that change when the producer sends them again. Deduplicate those by
//     a business key: txconsume.WithKeyFunc(txconsume.KeyByFirstKey) with the key in Message.WithKeys.
//   - The broker creates %RETRY%<group> on the first failure, and a running client learns a new route
//     only every 30s, so the very first redelivery of a new group can wait that long. Creating the retry
//     topic with the group avoids it.
//   - The client logs through a process-wide logger (package rlog). Importing this package routes it to
//     slog at error level and above: records naming a group to that Consumer's logger, the others
//     to SetClientLogger's or the longest-running Consumer's; see SetClientLogger and
//     SetClientLogLevel.
//   - The client's name server resolver accepts IP addresses only; Consumer resolves host names.
//   - When the client's connection to a broker closes (the broker crashed or restarted), each pull
//     that was in flight on it waits out a fixed 30s timeout and its queue then pauses 3s: a broker
//     back within seconds got no pull from the consumer for up to 33s. Consumer notices the closed
//     connection, logs it, probes the broker, and once it answers restarts the pulls of its queues
//     (two rebalances: one without them, one with them), so consumption resumes about a second
//     after the broker is back. A custom allocation strategy must be given with
//     WithAllocateStrategy for this to work.
//   - A broker that restarted knows a group's consumers only after their next heartbeat (every
//     30s), and until then the client's strategies allocate a consumer no queue at all; Consumer
//     keeps the queues it held instead.
package rmq
