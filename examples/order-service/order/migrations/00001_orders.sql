-- orders: one row per order. The payment consumer moves status from CREATED to PAID.
--
-- Identifiers are ascii_bin so that 'ORD-1' and 'ord-1 ' are different orders on MySQL and
-- MariaDB alike (the default _ci collations compare case- and trailing-space-insensitively).

-- +goose Up
CREATE TABLE IF NOT EXISTS orders (
    order_no     VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    sku          VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    quantity     INT NOT NULL,
    amount_cents BIGINT NOT NULL,
    status       VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'CREATED',
    payment_id   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    created_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    paid_at      DATETIME(6) NULL,
    PRIMARY KEY (order_no),
    KEY orders_status (status)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- +goose Down
DROP TABLE IF EXISTS orders;
