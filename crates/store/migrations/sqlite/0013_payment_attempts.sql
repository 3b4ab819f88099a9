-- Payment attempts recover (issue 14, item 4). A payment the processor is about to see is
-- recorded first as a `pending` row, linked to its Idempotency-Key; its outcome is written
-- later by an UPDATE that leaves `pending` only. A key being worked on holds a short lease
-- (`lease_until`, Unix ms): a request with the key after the lease ran out resolves it
-- (replays the answer, or reconciles the pending payment with the processor).
ALTER TABLE idempotency_keys ADD COLUMN payment_id TEXT;
ALTER TABLE idempotency_keys ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
-- Keys left running by a binary before this one: nothing says whether the processor was
-- called, so they keep the old rule (stuck until the 24-hour retention ends) rather than
-- run again now.
UPDATE idempotency_keys SET lease_until = created_at + 86400000 WHERE status = 0;
CREATE INDEX idempotency_keys_payment ON idempotency_keys (tenant_id, payment_id);
-- The reconciliation sweep looks for pending payments whose lease ran out.
CREATE INDEX payments_pending ON payments (updated_at) WHERE status = 'pending';
