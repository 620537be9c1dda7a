-- txconsume_outbox holds the messages that business transactions enqueued (package
-- txconsume/outbox) until a relay has published them to RocketMQ. A row is written in the same
-- transaction as the business writes, so the message exists exactly when those writes do.
--
-- id orders the rows for the relay. AUTO_INCREMENT values are taken at INSERT and committed in
-- any order, so the relay never reads "rows after the last id it sent": it reads the pending rows
-- in id order every time and deletes (or marks) the rows it sent.
--
-- msg_id is the message's id, fixed at enqueue time and sent as RocketMQ's UNIQ_KEY on every
-- attempt, so that a copy sent again after a relay crash is a duplicate for the consumers.
--
-- The message's own fields are binary (VARBINARY, BLOB) so that they come back byte for byte
-- whatever character set the connections use; properties are stored as JSON text in a BLOB.
-- size is the message's encoded size, which lets the relay bound a batch's bytes without
-- reading bodies.
--
-- shard is the lock slot of the row: a hash of the sharding key (of the id when there is none)
-- modulo the number of rows in txconsume_outbox_shard. A relay sends a row only while it holds the
-- row's shard locked (SELECT ... FOR UPDATE SKIP LOCKED on txconsume_outbox_shard), so at most one
-- relay at a time sends the messages of a sharding key, and sends them in id order.
--
-- sent_at is NULL while the row is pending. A relay sets it, on the database's UTC clock, in the
-- transaction of the round that sent the row, and deletes the row later: right after, or once an
-- audit window has passed. The index on
-- (sent_at, id) finds the pending rows in id order without reading the kept ones, and the old
-- sent rows in time order for cleanup; it also holds shard and size, so that the relay's read of
-- the pending rows (id, shard, size) is served by the index alone. created_at holds the database
-- server's clock in UTC whatever the session's time_zone, so ages are measured on one clock.

-- +goose Up
CREATE TABLE IF NOT EXISTS txconsume_outbox (
    id           BIGINT UNSIGNED   NOT NULL AUTO_INCREMENT,
    msg_id       VARBINARY(64)     NOT NULL,
    topic        VARBINARY(255)    NOT NULL,
    tags         VARBINARY(255)    NOT NULL DEFAULT '',
    msg_keys     BLOB              NOT NULL,
    sharding_key VARBINARY(255)    NOT NULL DEFAULT '',
    shard        SMALLINT UNSIGNED NOT NULL,
    properties   BLOB              NOT NULL,
    body         MEDIUMBLOB        NOT NULL,
    size         INT UNSIGNED      NOT NULL,
    created_at   DATETIME(6)       NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    sent_at      DATETIME(6)       NULL,
    PRIMARY KEY (id),
    KEY txconsume_outbox_pending (sent_at, id, shard, size)
) ENGINE = InnoDB;

-- One row per shard, locked by the relays and never written: 64 shards let up to 64 relays send
-- at once while every sharding key stays with one of them.
CREATE TABLE IF NOT EXISTS txconsume_outbox_shard (
    shard SMALLINT UNSIGNED NOT NULL,
    PRIMARY KEY (shard)
) ENGINE = InnoDB;

INSERT IGNORE INTO txconsume_outbox_shard (shard) VALUES
    (0), (1), (2), (3), (4), (5), (6), (7), (8), (9), (10), (11), (12), (13), (14), (15),
    (16), (17), (18), (19), (20), (21), (22), (23), (24), (25), (26), (27), (28), (29), (30), (31),
    (32), (33), (34), (35), (36), (37), (38), (39), (40), (41), (42), (43), (44), (45), (46), (47),
    (48), (49), (50), (51), (52), (53), (54), (55), (56), (57), (58), (59), (60), (61), (62), (63);

-- +goose Down
DROP TABLE IF EXISTS txconsume_outbox_shard;
DROP TABLE IF EXISTS txconsume_outbox;
