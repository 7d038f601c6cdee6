-- Target (MySQL 8.4) for the tablemover compose demo. Runs once, when the container's data directory
-- is initialised. tablemover creates the moved tables here itself.

CREATE DATABASE IF NOT EXISTS app;

-- See mysql-source.sql for why the demo user uses mysql_native_password.
CREATE USER 'mover'@'%' IDENTIFIED WITH mysql_native_password BY 'mover-pass';

-- Exactly what `tablemover check -c compose/move.mysql.toml` prints for the target (the README's
-- "Privileges"): on each moved table, rows (SELECT, INSERT, UPDATE, DELETE), the table itself
-- (CREATE; DROP for `discard`) and the AUTO_INCREMENT counter carried over at the cutover (ALTER);
-- on the state schema `_tablemover` (its `_` escaped: a database grant's name is a pattern), the
-- checkpoint, which tablemover creates there itself.
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ON `app`.`orders` TO 'mover'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ON `app`.`order_items` TO 'mover'@'%';
GRANT SELECT, INSERT, DELETE, CREATE, DROP ON `\_tablemover`.* TO 'mover'@'%';
