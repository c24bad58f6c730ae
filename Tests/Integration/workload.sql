-- sqlite3 workload for the drop-in tests: a 10k-row table, an index, joins,
-- grouping, string functions and an update; output must not depend on malloc.
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, score REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000)
INSERT INTO t SELECT x, printf('row%05d', x), x % 17, (x * 7919) % 1000 / 10.0 FROM c;
CREATE INDEX t_grp ON t(grp, score);
SELECT count(*), sum(id), max(name), round(avg(score), 3) FROM t;
SELECT grp, count(*), round(sum(score), 1) FROM t GROUP BY grp ORDER BY grp LIMIT 5;
SELECT a.name, b.name FROM t a JOIN t b ON a.id = b.id * 3 WHERE a.grp = 5 ORDER BY a.id DESC LIMIT 3;
UPDATE t SET name = upper(name) || '-' || grp WHERE id % 3 = 0;
SELECT count(*), max(name), group_concat(substr(name, 1, 4), '') FROM (SELECT name FROM t WHERE name LIKE 'ROW%' ORDER BY id LIMIT 20);
DELETE FROM t WHERE score > 50;
VACUUM;
SELECT count(*), sum(length(name)) FROM t;
