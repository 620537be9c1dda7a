-- payments_ledger: append-only money movements. There is deliberately no unique key on order_no:
-- a ledger records every entry it is given (refunds and partial payments are entries too), so a
-- payment applied twice shows up here as two rows instead of being hidden by a constraint.
--
-- msg_id records which delivery wrote the entry, for audits.

-- +goose Up
CREATE TABLE IF NOT EXISTS payments_ledger (
    id           BIGINT NOT NULL AUTO_INCREMENT,
    order_no     VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    payment_id   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    amount_cents BIGINT NOT NULL,
    msg_id       VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    KEY payments_ledger_order_no (order_no)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- +goose Down
DROP TABLE IF EXISTS payments_ledger;
