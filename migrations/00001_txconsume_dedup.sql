-- txconsume_dedup records "consumer group G consumed key K": the row is written in the same
-- transaction as the handler's business writes, so it exists exactly when those writes do.
--
-- consumer_group and dedup_key are VARBINARY so that comparison is byte-exact: under a _ci
-- collation 'Order-1' and 'order-1' (and 'a' and 'a ') would be the same key on MySQL and MariaDB.
-- Keys longer than 255 bytes are stored as '#sha256:' + hex SHA-256 (see txconsume.StoredKey).
--
-- claim_token is written only by ProcessBatch: the rows a batch transaction inserts carry its
-- random token, which lets one SELECT tell the keys it claimed from those that already existed.
--
-- created_at is indexed so that old rows can be deleted in time order (retention). It holds the
-- database server's clock in UTC whatever the session's time_zone, so consumers and the retention
-- job agree on ages even with different DSN settings (expression defaults need MySQL 8.0.13+ or
-- MariaDB 10.2+).

-- +goose Up
CREATE TABLE IF NOT EXISTS txconsume_dedup (
    consumer_group VARBINARY(255) NOT NULL,
    dedup_key      VARBINARY(255) NOT NULL,
    topic          VARBINARY(255) NOT NULL DEFAULT '',
    msg_id         VARBINARY(255) NOT NULL DEFAULT '',
    outcome        VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'applied',
    claim_token    BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at     DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    PRIMARY KEY (consumer_group, dedup_key),
    KEY txconsume_dedup_created_at (created_at)
) ENGINE = InnoDB;

-- +goose Down
DROP TABLE IF EXISTS txconsume_dedup;
