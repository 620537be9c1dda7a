-- shipments: one row per shipment the shipping service made. There is deliberately no unique key
-- on order_no (an order may ship in several parcels), so an order-shipped event applied twice
-- shows up here as two rows instead of being hidden by a constraint.
--
-- msg_id records which delivery wrote the row: the id the order service's outbox gave the event.

-- +goose Up
CREATE TABLE IF NOT EXISTS shipments (
    id         BIGINT NOT NULL AUTO_INCREMENT,
    order_no   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    sku        VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    quantity   INT NOT NULL,
    msg_id     VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    KEY shipments_order_no (order_no)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- +goose Down
DROP TABLE IF EXISTS shipments;
