// Package idem is txconsume's status mode: deduplication for handlers whose effects are outside
// the database, such as an HTTP call to a payment provider or an e-mail.
//
// # How it works
//
// Each delivery draws a random owner token and asks a Store for the message's key (by default the
// RocketMQ UNIQ_KEY, namespaced by consumer group and topic):
//
//   - the key is free: the store records it as PROCESSING, held by this owner until a TTL passes,
//     and the handler runs under a context that ends a safety margin before that TTL;
//   - the handler succeeds: the record becomes CONSUMED and is kept for a retention period;
//     a duplicate delivered in that period is acknowledged without running the handler;
//   - the handler fails (or panics): the record is deleted and the error returned, so the broker
//     redelivers the message and the next delivery runs the handler again;
//   - a duplicate arrives while the record is PROCESSING: it is retried later (ErrInProgress)
//     rather than run a second time concurrently;
//   - the process dies mid-message: its PROCESSING record expires after the TTL, and a later
//     delivery runs the handler again.
//
// Every transition is a compare-and-set on the owner token: an attempt that outlived its TTL and
// whose key was taken over cannot mark the new attempt's record consumed or delete it. If the
// store cannot be reached, Process returns an error and does not run the handler; the message is
// redelivered later. Running handlers without deduplication during an outage happens only when
// asked for with WithFailOpen.
//
// Two stores are provided: MySQLStore (table txconsume_idem, created by migrations.Up; times
// from the database server's clock; byte-exact keys) and RedisStore (SET NX PX and Lua
// compare-and-set scripts; Redis expires old records itself). Package idemtest is the
// conformance suite both pass.
//
// # Transactional mode or status mode?
//
// The transactional mode (package txconsume) records "group G consumed key K" in the same MySQL
// transaction as the handler's writes. Commit means both happened; rollback means neither did.
// When a message's effects are rows in that database, this is exactly-once, crash or not: use it.
//
// The status mode (this package) is for effects that no database transaction can contain. It
// guarantees that the handler is not run again for a key that was consumed within the retention,
// and never runs twice at the same time for one key while the PROCESSING record holds. It cannot
// make an external side effect exactly-once: if the process crashes (or loses the store) after
// the effect but before the record is marked CONSUMED, the record expires and the message is
// processed again, so the effect happens twice. Nothing on the consumer side can close that gap;
// only the receiver can. Pass an idempotency key the receiver deduplicates on (most payment APIs
// accept one; the message key is a good choice), or make the effect naturally idempotent (a PUT
// of a full state rather than an increment). The status mode then turns "at least once, often
// many times, sometimes concurrently" into "once, except after a crash at the wrong moment",
// which is what keeps the receiver's load and its duplicate handling small.
//
// Choose by where the effect lives:
//
//	effects are rows in the consumer's MySQL database   -> transactional mode (txconsume.New)
//	effects are outside it (HTTP, e-mail, another store) -> status mode (idem.New), and an
//	                                                        idempotency key at the receiver
//
// # Using it with RocketMQ
//
// *Processor has the same Process method as the transactional processor, so the RocketMQ adapter
// takes it unchanged: rmq.NewConsumer(p, ...) or rmq.Listener(p). An ErrInProgress carries
// txconsume.RetryAfter, which the adapter turns into a redelivery delay.
//
// # Choosing the TTL and retention
//
// The processing TTL (WithProcessingTTL, default 1 minute) bounds how long a crashed attempt
// blocks its key; it must exceed the handler's worst case, since a handler that ignores its
// context and runs past the TTL can have its key taken over and its effect repeated. The
// retention (WithRetention, default 72 hours, RocketMQ's default message retention) bounds how
// late a duplicate can arrive and still be recognised.
package idem
