package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
)

const releaseHelp = `
Removes the idem record of a key that is stuck in PROCESSING (its attempt died and its TTL is
long), so that the next delivery processes the message. Only a PROCESSING record is removed,
whoever holds it; if the attempt is in fact still running, its effect may happen twice.

With -force a CONSUMED record is removed too: a redelivery of the message then runs its effect
again.

-store says which store holds the records: mysql (txconsume_idem, via -dsn) or redis (via
-redis). -topic may be omitted when the key has a record on one topic only. The removed record
is printed.`

// adminStore is what release needs of an idem store.
type adminStore interface {
	Inspect(ctx context.Context, group, topic, id string) ([]idem.Record, error)
	ForceRelease(ctx context.Context, key idem.Key) (idem.Record, error)
	Delete(ctx context.Context, key idem.Key) (idem.Record, error)
}

func runRelease(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("release", "-group G -key K [-topic T] -store mysql|redis [-force]", releaseHelp, errOut)
	dsn := dsnFlag(fs)
	redisAddr, redisPrefix := redisFlags(fs)
	group := fs.String("group", "", "consumer group (required)")
	key := fs.String("key", "", "idempotency key, as the key function returns it (required)")
	topic := fs.String("topic", "", "topic of the record (default: the key's only topic)")
	storeName := fs.String("store", "", "mysql or redis (required)")
	force := fs.Bool("force", false, "remove the record even if it is CONSUMED")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "group", "key", "store"); err != nil {
		return err
	}
	var store adminStore
	switch *storeName {
	case "mysql":
		db, err := openMySQL(ctx, *dsn)
		if err != nil {
			return err
		}
		defer db.Close()
		store = idem.NewMySQLStore(db.DB)
	case "redis":
		c, err := openRedis(ctx, *redisAddr)
		if err != nil {
			return err
		}
		defer c.Close()
		store = idem.NewRedisStore(c, *redisPrefix)
	default:
		return usagef("unknown -store %q: want mysql or redis", *storeName)
	}

	k := idem.Key{Group: *group, Topic: *topic, ID: *key}
	if k.Topic == "" {
		recs, err := store.Inspect(ctx, k.Group, "", k.ID)
		if err != nil {
			return err
		}
		switch len(recs) {
		case 0:
			return fmt.Errorf("no %s idem record for group %q key %q", *storeName, k.Group, k.ID)
		case 1:
			k.Topic = recs[0].Key.Topic
		default:
			topics := make([]string, len(recs))
			for i, r := range recs {
				topics[i] = fmt.Sprintf("%q", r.Key.Topic)
			}
			sort.Strings(topics)
			return usagef("key %q has records on several topics (%s): choose one with -topic", k.ID, strings.Join(topics, ", "))
		}
	}

	var (
		r   idem.Record
		err error
	)
	if *force {
		r, err = store.Delete(ctx, k)
	} else {
		r, err = store.ForceRelease(ctx, k)
	}
	switch {
	case errors.Is(err, idem.ErrNoRecord):
		return fmt.Errorf("no %s idem record for group %q topic %q key %q", *storeName, k.Group, k.Topic, k.ID)
	case errors.Is(err, idem.ErrNotProcessing):
		return fmt.Errorf("the record is %s, not PROCESSING: nothing removed (-force removes it, and a redelivery "+
			"then runs the effect again)", r.StateName())
	case err != nil:
		return err
	}
	printIdem(out, "released "+*storeName+" idem record", []idem.Record{r})
	return nil
}

const forgetHelp = `
DANGEROUS. Deletes the txconsume_dedup record of a key, so that the next delivery of the message
is APPLIED AGAIN: its handler runs and its business writes happen a second time. Use it only
after undoing the first application's effects by hand, or to re-apply a message that was
discarded (outcome "discarded") once the cause is fixed. Requires -yes. The deleted record is
printed.`

func runForget(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("forget", "-group G -key K -yes", forgetHelp, errOut)
	dsn := dsnFlag(fs)
	group := fs.String("group", "", "consumer group (required)")
	key := fs.String("key", "", "deduplication key (required)")
	yes := fs.Bool("yes", false, "confirm: the message will be applied again when it is delivered again")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "group", "key"); err != nil {
		return err
	}
	if !*yes {
		return usagef("forget makes a redelivery of the message apply it again; add -yes to confirm")
	}
	db, err := openMySQL(ctx, *dsn)
	if err != nil {
		return err
	}
	defer db.Close()

	stored := txconsume.StoredKey(*key)
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	r, err := loadDedup(ctx, tx, *group, stored, true)
	if err != nil {
		return err
	}
	if r == nil {
		return fmt.Errorf("no dedup record for group %q key %q: nothing deleted", *group, *key)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM "+txconsume.DedupTable+" WHERE consumer_group = ? AND dedup_key = ?",
		*group, stored); err != nil {
		return fmt.Errorf("delete dedup record: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete dedup record: %w", err)
	}
	writeDedup(out, fmt.Sprintf("deleted dedup record of group %q key %q:", *group, *key), r)
	return nil
}
