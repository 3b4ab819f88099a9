-- Webhooks as a platform service: an endpoint can be disabled without being deleted
-- (Standard Webhooks: a receiver answering 410 Gone says it no longer wants deliveries;
-- a tenant can also pause one). A disabled endpoint gets no new deliveries and its queued
-- ones are not sent; it stays listed, with the reason, until re-enabled.
-- `disabled_at` (from 0010) keeps meaning deleted.
ALTER TABLE webhook_endpoints ADD COLUMN suspended_at BIGINT;
ALTER TABLE webhook_endpoints ADD COLUMN suspended_reason TEXT;
