-- stock: units available per SKU. Paying an order takes its quantity out of stock, once.

-- +goose Up
CREATE TABLE IF NOT EXISTS stock (
    sku        VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    available  INT NOT NULL,
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (sku)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- +goose Down
DROP TABLE IF EXISTS stock;
