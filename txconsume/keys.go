package txconsume

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// KeyFunc derives the deduplication key of a message. Two deliveries with the same key in the
// same consumer group are the same message: only one of them is applied. An empty key or an
// error means the message is not processed (the error wraps ErrEmptyKey for a missing key).
type KeyFunc func(*Message) (string, error)

// KeyByID keys messages by Message.ID (RocketMQ UNIQ_KEY), which survives redelivery and
// producer retries of one send. It is the default.
func KeyByID(msg *Message) (string, error) {
	if msg.ID == "" {
		return "", fmt.Errorf("%w: message has no ID", ErrEmptyKey)
	}
	return msg.ID, nil
}

// KeyByFirstKey keys messages by their first business key (RocketMQ KEYS), for producers that
// may send the same business event twice under different message IDs. A message without keys,
// or whose first key is empty, is an error.
func KeyByFirstKey(msg *Message) (string, error) {
	if len(msg.Keys) == 0 || msg.Keys[0] == "" {
		return "", fmt.Errorf("%w: message %s has no business key", ErrEmptyKey, msg.ID)
	}
	return msg.Keys[0], nil
}

// KeyByProperty keys messages by the user property name (e.g. an idempotency key the producer
// sets). A missing or empty property is an error.
func KeyByProperty(name string) KeyFunc {
	return func(msg *Message) (string, error) {
		v := msg.Properties[name]
		if v == "" {
			return "", fmt.Errorf("%w: message %s has no property %q", ErrEmptyKey, msg.ID, name)
		}
		return v, nil
	}
}

// MaxStoredKeyLen is the size of the dedup_key column in bytes.
const MaxStoredKeyLen = 255

// hashedKeyPrefix starts every hashed key.
const hashedKeyPrefix = "#sha256:"

// StoredKey returns the form in which key is stored in txconsume_dedup.dedup_key:
//
//   - a key of at most MaxStoredKeyLen bytes is stored as it is, byte for byte (the column is
//     VARBINARY: case and trailing spaces matter);
//   - a longer key is stored as "#sha256:" followed by the 64 lower-case hex digits of its
//     SHA-256, so two different long keys do not collide (short of a SHA-256 collision);
//   - a key that itself begins with "#sha256:" is hashed too, whatever its length, so a raw key
//     can never be equal to the stored form of another key.
//
// Tools that look keys up in the table must apply the same function.
func StoredKey(key string) string {
	if len(key) <= MaxStoredKeyLen && !strings.HasPrefix(key, hashedKeyPrefix) {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return hashedKeyPrefix + hex.EncodeToString(sum[:])
}
