-- Prepared transactions: walship declines two-phase decoding, so a prepared
-- transaction is decoded once, when COMMIT PREPARED commits it, and never when it is
-- rolled back; nothing reaches a consumer that could still be undone. This holds for
-- a slot created with two-phase enabled too.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;

CREATE TABLE tp (id integer PRIMARY KEY);
SELECT 'init' FROM pg_create_logical_replication_slot('twophase', 'walship', false, true);
SELECT two_phase FROM pg_replication_slots WHERE slot_name = 'twophase';

BEGIN;
INSERT INTO tp VALUES (1);
PREPARE TRANSACTION 'walship_commit';
BEGIN;
INSERT INTO tp VALUES (2);
PREPARE TRANSACTION 'walship_rollback';

-- prepared, not committed: nothing
SELECT count(*) AS events FROM pg_logical_slot_peek_binary_changes('twophase', NULL, NULL);

COMMIT PREPARED 'walship_commit';
ROLLBACK PREPARED 'walship_rollback';

SELECT e->>'op' AS op, e->'after'->'columns'->0->'value' AS id
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_get_binary_changes('twophase', NULL, NULL,
                                                  'include-transaction', 'on')) s;

SELECT 'stop' FROM pg_drop_replication_slot('twophase');
DROP TABLE tp;
