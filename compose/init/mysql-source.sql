-- Source (MySQL 8.4) for the tablemover compose demo. Runs once, when the container's data directory
-- is initialised (docker-entrypoint-initdb.d); `docker compose ... down -v` resets it.

SET NAMES utf8mb4;

CREATE DATABASE IF NOT EXISTS app;

-- The move user. tablemover's drivers (asyncmy, PyMySQL) need the `cryptography` package for
-- caching_sha2_password over a plain TCP connection, so the demo user authenticates with
-- mysql_native_password (enabled on this server with --mysql-native-password=ON). With
-- `pip install cryptography` next to tablemover, drop the `WITH mysql_native_password` part.
CREATE USER 'mover'@'%' IDENTIFIED WITH mysql_native_password BY 'mover-pass';

-- Exactly what `tablemover check -c compose/move.mysql.toml` prints for the source (the README's
-- "Privileges"): REPLICATION SLAVE streams the binlog, REPLICATION CLIENT reads binlog positions;
-- SELECT copies the rows; ALTER and DROP on each table and CREATE and INSERT on its renamed name are
-- what the cutover's RENAME TABLE needs (granted before that name exists, which CREATE allows);
-- SELECT on the renamed name is for `verify` after the cutover, DROP for `cleanup --drop-source`;
-- LOCK TABLES (per database only): MySQL 8.0.22+ needs one of UPDATE, DELETE or LOCK TABLES for
-- locking (FOR SHARE) reads.
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'mover'@'%';
GRANT SELECT, DROP, ALTER ON `app`.`orders` TO 'mover'@'%';
GRANT LOCK TABLES ON `app`.* TO 'mover'@'%';
GRANT SELECT, INSERT, CREATE, DROP ON `app`.`_orders_moved` TO 'mover'@'%';
GRANT SELECT, DROP, ALTER ON `app`.`order_items` TO 'mover'@'%';
GRANT SELECT, INSERT, CREATE, DROP ON `app`.`_order_items_moved` TO 'mover'@'%';

-- Demo tables: InnoDB, primary keys, no foreign keys, no triggers (what tablemover can move).
CREATE TABLE app.orders (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  customer_id INT UNSIGNED    NOT NULL,
  status      VARCHAR(16)     NOT NULL DEFAULT 'new',
  total_cents BIGINT          NOT NULL DEFAULT 0,
  note        VARCHAR(255)    NULL,
  created_at  DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at  DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (id),
  KEY idx_customer (customer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE app.order_items (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  order_id    BIGINT UNSIGNED NOT NULL,
  sku         VARCHAR(32)     NOT NULL,
  quantity    INT UNSIGNED    NOT NULL,
  price_cents INT UNSIGNED    NOT NULL,
  PRIMARY KEY (id),
  KEY idx_order (order_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT INTO app.orders (id, customer_id, status, total_cents, note) VALUES
  (1, 101, 'paid',      2598, NULL),
  (2, 102, 'new',       1299, 'leave at the door'),
  (3, 103, 'shipped',   4997, NULL),
  (4, 101, 'new',        899, 'gift wrap, ünïcödé ✓'),
  (5, 104, 'cancelled', 1500, NULL),
  (6, 105, 'paid',      3798, NULL);

INSERT INTO app.order_items (order_id, sku, quantity, price_cents) VALUES
  (1, 'SKU-0001', 2, 1299),
  (2, 'SKU-0001', 1, 1299),
  (3, 'SKU-0042', 3,  999),
  (3, 'SKU-0007', 1, 2000),
  (4, 'SKU-0100', 1,  899),
  (5, 'SKU-0005', 1, 1500),
  (6, 'SKU-0042', 2,  999),
  (6, 'SKU-0009', 2,  900);
