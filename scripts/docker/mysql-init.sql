-- Tests create and drop a database each, so the txconsume user gets every privilege,
-- exactly as scripts/services.sh grants it on a local MariaDB.
CREATE USER IF NOT EXISTS 'txconsume'@'%' IDENTIFIED BY 'txconsume';
GRANT ALL PRIVILEGES ON *.* TO 'txconsume'@'%' WITH GRANT OPTION;
