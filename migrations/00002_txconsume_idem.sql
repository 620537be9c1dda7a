-- txconsume_idem holds the records of the status mode (package txconsume/idem): one row per
-- (consumer group, topic, key) that is PROCESSING (status 1) until expires_at, or CONSUMED
-- (status 2) and retained until expires_at. A row past expires_at counts as absent: the next
-- acquire takes it over, and the store's Cleanup deletes such rows in batches.
--
-- consumer_group, topic and idem_key are VARBINARY so that comparison is byte-exact: under a _ci
-- collation 'Order-1' and 'order-1' (and 'a' and 'a ') would be the same key on MySQL and MariaDB.
-- Keys longer than 255 bytes are stored as '#sha256:' + hex SHA-256, as in txconsume_dedup.
--
-- owner is the random token of the attempt that holds the row; every transition compares it, so an
-- attempt whose row expired and was taken over cannot change the new holder's row.
--
-- expires_at is DATETIME(6) written and compared only with UTC_TIMESTAMP(6) on the server: the
-- database clock decides expiry (application clocks may drift) and the session time zone plays no
-- part. DATETIME rather than TIMESTAMP also avoids the implicit DEFAULT/ON UPDATE CURRENT_TIMESTAMP
-- that servers with explicit_defaults_for_timestamp=OFF (MariaDB before 10.10) give a first
-- TIMESTAMP column, which would silently move expires_at on every update.

-- +goose Up
CREATE TABLE IF NOT EXISTS txconsume_idem (
    consumer_group VARBINARY(255) NOT NULL,
    topic          VARBINARY(255) NOT NULL,
    idem_key       VARBINARY(255) NOT NULL,
    status         TINYINT UNSIGNED NOT NULL,
    owner          VARBINARY(64) NOT NULL,
    expires_at     DATETIME(6) NOT NULL,
    updated_at     DATETIME(6) NOT NULL,
    PRIMARY KEY (consumer_group, topic, idem_key),
    KEY txconsume_idem_expires_at (expires_at)
) ENGINE = InnoDB;

-- +goose Down
DROP TABLE IF EXISTS txconsume_idem;
