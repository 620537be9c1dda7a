// Package outbox publishes messages to RocketMQ exactly when a database transaction commits:
// the transactional outbox.
//
// A handler that changes the database and must also announce it (order paid, so reserve stock;
// stock reserved, so ship) has only bad choices without it. Sending inside the transaction
// publishes a message for writes that may still roll back; sending after the commit loses the
// message when the process dies in between. The outbox writes the message into a table in the
// same transaction as the business writes, and a relay publishes it from there.
//
// # Enqueue in the transaction
//
// Enqueue takes any *sqlx.Tx. Inside a txconsume handler it makes consume-and-produce one
// transaction: the dedup claim of the message consumed, the business writes and the messages
// produced commit or roll back together.
//
//	p, err := txconsume.New(db, "stock", func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
//		if _, err := tx.ExecContext(ctx, "UPDATE stock SET reserved = reserved + 1 WHERE sku = ?", sku); err != nil {
//			return err
//		}
//		return outbox.Enqueue(ctx, tx, outbox.Message{
//			Topic:       "stock-reserved",
//			Keys:        []string{orderNo},
//			ShardingKey: orderNo, // this order's events stay in order
//			Body:        body,
//		})
//	})
//
// In any other transaction, an HTTP handler's for instance, it is the same call before Commit.
// Enqueue checks every message against what the broker accepts (topic name, body size,
// property names and sizes) and refuses bad ones with an error wrapping ErrInvalidMessage, so
// that no row can block the relay.
//
// # The relay
//
// A Relay reads the table and publishes. Give it a producer created with this package's
// queue selector (see QueueSelector for why) and run it for as long as the service runs:
//
//	prod, err := rocketmq.NewProducer(
//		producer.WithNsResolver(primitive.NewPassthroughResolver([]string{"127.0.0.1:9876"})),
//		producer.WithGroupName("stock-outbox"),
//		producer.WithQueueSelector(outbox.QueueSelector()),
//	)
//	err = prod.Start()
//	relay, err := outbox.NewRelay(db, prod)
//	go relay.Run(ctx) // returns when ctx ends, after finishing its round
//
// Each round takes the oldest pending rows (up to WithBatchSize; one read of the table lists the
// rows of several rounds), locks their shards (a hash of the sharding key) with SELECT ... FOR
// UPDATE SKIP LOCKED in a READ COMMITTED transaction, sends the rows in batches, one per topic
// and queue, and marks exactly the rows the broker stored as sent before it commits; the relay
// deletes them within a second (or after WithRetention). No statement of a round waits for another
// transaction's rows, another relay's or an open Enqueue's. Every read starts
// at the oldest pending row: the relay never reads "the rows after the last id it sent", because
// AUTO_INCREMENT ids commit out of order and such a reader skips rows.
//
// Enqueue wakes the relays of its own process at once. Because it runs before the transaction
// commits, a relay that finds nothing looks again after 1, 2, 4 ... 128 ms and then every 128 ms
// for a second; rows committed by other processes are found by polling (WithPollInterval, 500ms
// by default).
//
// # What is guaranteed
//
//   - Every committed message is published at least once, and a rolled-back one never.
//   - Every copy of a message carries the id Enqueue gave it as RocketMQ's UNIQ_KEY (the
//     client keeps a UNIQ_KEY that is set, on retries and in batch sends). A copy sent again
//     after a relay crash, a failed commit of the round, or a lost acknowledgement is therefore
//     the same message to consumers: a txconsume consumer with the default key (KeyByID)
//     reports it as a Duplicate and does not apply it again. At-least-once publishing plus a
//     stable id is exactly-once effects downstream, and a chain of txconsume services with
//     outboxes is exactly-once end to end.
//   - In normal operation no message is sent twice, with any number of relays, in one process
//     or many: a relay sends only rows whose shard it holds locked, and marks them sent before it
//     releases the shard. Copies come only from failures (a crash or lost connection between
//     the send and the commit, a send that timed out after the broker stored it).
//   - Messages with the same sharding key go to one queue of their topic (the one
//     producer.NewHashQueueSelector would choose) in the order they were enqueued, with any
//     number of relays, when the transactions that enqueue a key's messages follow one another
//     (as the updates of one business row do, under its row lock). Messages of transactions
//     that overlap have no order between them and go in the order of their ids or of their
//     commits. An orderly consumer sees them in that order; copies sent again are duplicates
//     to txconsume, so the order of effects holds. The order depends on the topic's number of
//     writable queues: when it changes (a topic resized, a broker of several down), a key moves
//     to another queue, as with any hash selector.
//   - A broker that is down or refuses a topic costs no message: the relay backs off per topic
//     (WithBackoff), keeps the rows and sends them when the broker takes them again. A database
//     that fails makes the round roll back; the relay backs off and tries again.
//   - Run stops when its context ends: the round in progress sends no more, records what it
//     sent and releases the rest. A relay that is killed holds nothing: the database rolls its
//     transaction back when the connection drops, and the next round of any relay sends the
//     rows again.
//
// # Operations
//
// A round marks the rows it sent with an UPDATE of sent_at; the relay deletes them within a
// second, or keeps them for an audit window (WithRetention) first, in bounded batches either
// way. Neither the relay nor the cleanup ever makes Enqueue wait: they lock only the rows and
// shards they use, in READ COMMITTED transactions (which take no gap locks; a server with
// binlog_format=STATEMENT refuses writes at that level, use ROW or MIXED). With row-based
// binary logs and binlog_row_image=FULL (the default), the UPDATE logs the whole row, body
// included, twice; binlog_row_image=NOBLOB spares large bodies. Status, and `txconsume outbox
// status` on the
// command line, report per topic the pending messages and the age of the oldest, which is what
// to alert on; Hooks receive every send (for counters of sent messages and failures) and the
// same status periodically (for gauges). When the enqueuing context carries an OpenTelemetry
// span, its W3C traceparent and tracestate go into the message's properties, so consumers
// continue the trace.
//
// The relay needs MySQL 8.0.13+ or MariaDB 10.6+, for SELECT ... FOR UPDATE SKIP LOCKED (Run checks
// and fails with ErrServerTooOld on older servers). Apply the schema with migrations.Up.
//
// # RocketMQ's transactional messages instead?
//
// RocketMQ can make a send conditional on a local transaction itself: the producer sends a half
// message, runs its transaction, then commits or rolls back the half message, and the broker asks
// a check-back listener about half messages left undecided. Prefer that when the producer keeps
// no state in this MySQL database (there is no transaction to put an outbox row in), when an
// extra table and a relay are a cost you cannot take, or when the latency of the relay's hop
// matters more than the rest. Prefer the outbox when the state is in MySQL: the transaction never
// waits for the broker and does not fail when the broker is down (a half message needs the
// broker at the start of every transaction), a transaction can enqueue any number of messages,
// to any topics, in order per sharding key (transactional messages are sent one by one and are
// not ordered), and there is no check-back listener to write, whose answer for a transaction
// still running or lost is the hard part.
package outbox
