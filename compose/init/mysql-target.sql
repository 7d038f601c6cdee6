-- Target (MySQL 8.4) for the tablemover compose demo. Runs once, when the container's data directory
-- is initialised. tablemover creates the moved tables (and its checkpoint table) here itself.

CREATE DATABASE IF NOT EXISTS app;

-- See mysql-source.sql for why the demo user uses mysql_native_password.
CREATE USER 'mover'@'%' IDENTIFIED WITH mysql_native_password BY 'mover-pass';

-- Exactly the privileges the README documents for a target: rows and checkpoint (SELECT, INSERT,
-- UPDATE, DELETE), schema, tables and checkpoint table (CREATE, DROP), the AUTO_INCREMENT
-- counter carried over at the cutover (ALTER).
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ON `app`.* TO 'mover'@'%';
-- The move's own state schema (its checkpoint), created by the daemon; the application gets nothing on it.
GRANT SELECT, INSERT, DELETE, CREATE, DROP ON `_tablemover`.* TO 'mover'@'%';
