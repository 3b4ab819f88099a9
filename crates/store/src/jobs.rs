//! The job queue's tables (`jobs`, `cron_runs`): enqueueing (also inside a caller's
//! transaction), claiming with a lease, finishing, and the operator views. The runtime
//! that polls and runs handlers is `crates/jobs`; this module owns only the SQL.
//!
//! Claiming is one `UPDATE ... RETURNING`. On PostgreSQL the candidate rows are picked
//! with `FOR UPDATE SKIP LOCKED`, so nodes claiming at once take different jobs instead
//! of queueing on each other's row locks. SQLite has one writer at a time (our writer
//! mutex in-process, `BEGIN IMMEDIATE` across processes), so the same statement without
//! the locking clause is already atomic.
//!
//! Every claim increments `attempts`, and the pair (`lease_owner`, `attempts`) fences the
//! claim: finishing, renewing or returning a job matches both, so a worker whose lease
//! expired (and whose job another worker took) cannot overwrite the newer run's outcome.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::{new_id, now_ms, Backend, NewAuditEvent, Store, StoreError, Tx};

/// A job to enqueue. `payload` is JSON text holding references (ids), never secrets:
/// it is stored in clear and shown by `rampart jobs list --json`.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub queue: String,
    pub kind: String,
    pub payload: String,
    /// Higher runs first among due jobs of a queue.
    pub priority: i64,
    /// Not before this time (ms since the epoch).
    pub run_at: i64,
    pub max_attempts: i64,
    /// While a job of the same kind with this key is queued or running, enqueueing another
    /// does nothing.
    pub unique_key: Option<String>,
}

/// The states a job can be in.
pub const JOB_STATES: &[&str] = &["queued", "running", "done", "dead"];

/// One stored job.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobRow {
    pub id: String,
    pub queue: String,
    pub kind: String,
    pub payload: String,
    pub priority: i64,
    pub run_at: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub state: String,
    pub unique_key: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The `traceparent` of the request (or job) that enqueued it, when traces are
    /// exported: the job's span continues that trace.
    pub trace_parent: Option<String>,
}

/// Depth of one queue for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub queue: String,
    pub queued: i64,
    pub running: i64,
    pub dead: i64,
    /// The `run_at` of the oldest queued job, due or not.
    pub oldest_queued_run_at: Option<i64>,
}

/// What happened to a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    Retrying,
    Dead,
    /// The claim was no longer ours (lease expired and taken over): nothing changed.
    LeaseLost,
}

const COLUMNS: &str = "id, queue, kind, payload, priority, run_at, attempts, max_attempts, \
     state, unique_key, lease_owner, lease_until, last_error, created_at, updated_at, \
     trace_parent";

fn from_row(r: &AnyRow) -> Result<JobRow, StoreError> {
    Ok(JobRow {
        id: r.try_get("id")?,
        queue: r.try_get("queue")?,
        kind: r.try_get("kind")?,
        payload: r.try_get("payload")?,
        priority: r.try_get("priority")?,
        run_at: r.try_get("run_at")?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        state: r.try_get("state")?,
        unique_key: r.try_get("unique_key")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_until: r.try_get("lease_until")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        trace_parent: r.try_get("trace_parent")?,
    })
}

/// Inserts `job` on `conn`; `None` when a live job of the same kind holds its unique key.
pub(crate) async fn insert(
    conn: &mut AnyConnection,
    job: &NewJob,
) -> Result<Option<String>, StoreError> {
    let now = now_ms();
    // ON CONFLICT DO NOTHING (both backends): a duplicate key neither errors nor aborts the
    // caller's PostgreSQL transaction, which a caught unique violation would.
    let id: Option<String> = sqlx::query_scalar(
        "INSERT INTO jobs (id, queue, kind, payload, priority, run_at, attempts, max_attempts, \
         state, unique_key, created_at, updated_at, trace_parent) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, 'queued', $8, $9, $9, $10) \
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(new_id())
    .bind(&job.queue)
    .bind(&job.kind)
    .bind(&job.payload)
    .bind(job.priority)
    .bind(job.run_at)
    .bind(job.max_attempts)
    .bind(job.unique_key.clone())
    .bind(now)
    .bind(crate::trace_context::current())
    .fetch_optional(conn)
    .await?;
    Ok(id)
}

impl<S> Tx<S> {
    /// Enqueues `job` inside this transaction, so it commits or rolls back with the
    /// caller's own writes (an outbox). `None`: a live job already holds the unique key.
    pub async fn enqueue_job(&mut self, job: &NewJob) -> Result<Option<String>, StoreError> {
        insert(self.conn(), job).await
    }
}

impl Store {
    /// Enqueues `job` in a transaction of its own.
    pub async fn enqueue_job(&self, job: &NewJob) -> Result<Option<String>, StoreError> {
        let mut tx = self.system_write().await?;
        let id = insert(tx.conn(), job).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Claims up to `limit` due jobs of `queue` for `owner` until `lease_until`, highest
    /// priority first, then oldest `run_at`. Each claim counts as an attempt.
    pub async fn claim_jobs(
        &self,
        queue: &str,
        limit: i64,
        owner: &str,
        lease_until: i64,
    ) -> Result<Vec<JobRow>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $1, \
             lease_until = $2, updated_at = $3 \
             WHERE id IN (SELECT id FROM jobs WHERE queue = $4 AND state = 'queued' \
             AND run_at <= $3 ORDER BY priority DESC, run_at, id LIMIT $5{lock}) \
             RETURNING {COLUMNS}"
        );
        let mut tx = self.system_write().await?;
        let rows = sqlx::query(&sql)
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .bind(queue)
            .bind(limit)
            .fetch_all(tx.conn())
            .await?;
        tx.commit().await?;
        let mut jobs = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        // RETURNING promises no order.
        jobs.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(jobs)
    }

    /// Extends a running job's lease; `false` when the claim is no longer ours.
    pub async fn renew_job_lease(
        &self,
        id: &str,
        owner: &str,
        attempt: i64,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.system_write().await?;
        let n = sqlx::query(
            "UPDATE jobs SET lease_until = $1, updated_at = $2 \
             WHERE id = $3 AND state = 'running' AND lease_owner = $4 AND attempts = $5",
        )
        .bind(lease_until)
        .bind(now_ms())
        .bind(id)
        .bind(owner)
        .bind(attempt)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Marks a claimed job done; `false` when the claim is no longer ours.
    pub async fn complete_job(
        &self,
        id: &str,
        owner: &str,
        attempt: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.system_write().await?;
        let n = sqlx::query(
            "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_until = NULL, \
             last_error = NULL, updated_at = $1 \
             WHERE id = $2 AND state = 'running' AND lease_owner = $3 AND attempts = $4",
        )
        .bind(now_ms())
        .bind(id)
        .bind(owner)
        .bind(attempt)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Records a failed attempt: queued again at `retry_at`, or dead when `retry_at` is
    /// `None` (a permanent error) or the job has used all its attempts.
    pub async fn fail_job(
        &self,
        id: &str,
        owner: &str,
        attempt: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<FailOutcome, StoreError> {
        let mut tx = self.system_write().await?;
        let state: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET \
               state = CASE WHEN $1 = 0 OR attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
               run_at = CASE WHEN $1 = 0 OR attempts >= max_attempts THEN run_at ELSE $2 END, \
               lease_owner = NULL, lease_until = NULL, last_error = $3, updated_at = $4 \
             WHERE id = $5 AND state = 'running' AND lease_owner = $6 AND attempts = $7 \
             RETURNING state",
        )
        .bind(i64::from(retry_at.is_some()))
        .bind(retry_at.unwrap_or(0))
        .bind(error)
        .bind(now_ms())
        .bind(id)
        .bind(owner)
        .bind(attempt)
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(match state.as_deref() {
            None => FailOutcome::LeaseLost,
            Some("dead") => FailOutcome::Dead,
            Some(_) => FailOutcome::Retrying,
        })
    }

    /// Gives a claimed job back untouched (graceful shutdown): queued, its attempt not
    /// counted, due at once.
    pub async fn return_job(
        &self,
        id: &str,
        owner: &str,
        attempt: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.system_write().await?;
        let n = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_owner = NULL, \
             lease_until = NULL, updated_at = $1 \
             WHERE id = $2 AND state = 'running' AND lease_owner = $3 AND attempts = $4",
        )
        .bind(now_ms())
        .bind(id)
        .bind(owner)
        .bind(attempt)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Puts a claimed job back, its attempt not counted, due at `run_at`: the handler
    /// could not start its work yet (a rate limit), which is not a failure.
    pub async fn defer_job(
        &self,
        id: &str,
        owner: &str,
        attempt: i64,
        run_at: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.system_write().await?;
        let n = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_owner = NULL, \
             lease_until = NULL, run_at = $1, updated_at = $2 \
             WHERE id = $3 AND state = 'running' AND lease_owner = $4 AND attempts = $5",
        )
        .bind(run_at)
        .bind(now_ms())
        .bind(id)
        .bind(owner)
        .bind(attempt)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Jobs whose lease ran out (their worker died or hung) go back to the queue, their
    /// attempt counted: a job that kills its worker every time ends dead, not in a loop.
    /// Returns how many were reclaimed.
    pub async fn reclaim_expired_jobs(&self, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.system_write().await?;
        let n = sqlx::query(
            "UPDATE jobs SET \
               state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
               last_error = 'lease expired: the worker stopped without finishing', \
               lease_owner = NULL, lease_until = NULL, updated_at = $1 \
             WHERE state = 'running' AND lease_until < $1",
        )
        .bind(now)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    pub async fn get_job(&self, id: &str) -> Result<JobRow, StoreError> {
        let mut tx = self.system_read().await?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(tx.conn())
            .await?;
        tx.commit().await?;
        from_row(&row.ok_or(StoreError::NotFound)?)
    }

    /// Jobs, newest first, optionally of one queue and one state.
    pub async fn list_jobs(
        &self,
        queue: Option<&str>,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<JobRow>, StoreError> {
        self.list_jobs_before(queue, state, None, limit).await
    }

    /// One page of [`Store::list_jobs`]: the jobs created before `before`
    /// (`(created_at, id)` of the last job of the previous page).
    pub async fn list_jobs_before(
        &self,
        queue: Option<&str>,
        state: Option<&str>,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<JobRow>, StoreError> {
        let (before_at, before_id) = before.unwrap_or((i64::MAX, ""));
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE ($1 = '' OR queue = $1) AND ($2 = '' OR state = $2) \
             AND (created_at < $3 OR (created_at = $3 AND ($4 = '' OR id < $4))) \
             ORDER BY created_at DESC, id DESC LIMIT $5"
        ))
        .bind(queue.unwrap_or(""))
        .bind(state.unwrap_or(""))
        .bind(before_at)
        .bind(before_id)
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// Re-queues a dead job with a fresh set of attempts, recording `audit` in the
    /// platform tenant's log. `NotFound` when no dead job has this id; `Conflict` when a
    /// live job of the same kind holds its unique key.
    pub async fn retry_dead_job(
        &self,
        id: &str,
        mut audit: NewAuditEvent,
    ) -> Result<JobRow, StoreError> {
        let mut tx = self.system_write().await?;
        let now = now_ms();
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $1, updated_at = $1 \
             WHERE id = $2 AND state = 'dead' RETURNING {COLUMNS}"
        ))
        .bind(now)
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
        let job = from_row(&row.ok_or(StoreError::NotFound)?)?;
        audit.target_id = Some(job.id.clone());
        tx.audit(crate::PLATFORM_TENANT_ID, &audit).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Per-queue counts of live and dead jobs.
    pub async fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(
            "SELECT queue, state, COUNT(*) AS n, MIN(run_at) AS oldest FROM jobs \
             WHERE state IN ('queued', 'running', 'dead') GROUP BY queue, state ORDER BY queue",
        )
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        let mut depths: Vec<QueueDepth> = Vec::new();
        for r in &rows {
            let queue: String = r.try_get("queue")?;
            let state: String = r.try_get("state")?;
            let n: i64 = r.try_get("n")?;
            let oldest: Option<i64> = r.try_get("oldest")?;
            if depths.last().is_none_or(|d| d.queue != queue) {
                depths.push(QueueDepth {
                    queue,
                    ..QueueDepth::default()
                });
            }
            if let Some(d) = depths.last_mut() {
                match state.as_str() {
                    "queued" => {
                        d.queued = n;
                        d.oldest_queued_run_at = oldest;
                    }
                    "running" => d.running = n,
                    _ => d.dead = n,
                }
            }
        }
        Ok(depths)
    }

    /// Claims cron slot (`name`, `slot`) for `node` and enqueues `job` in the same
    /// transaction. `true` for the one node that wins the slot; every other node (and a
    /// second attempt by the same node) gets `false` and enqueues nothing.
    pub async fn enqueue_cron_job(
        &self,
        name: &str,
        slot: i64,
        node: &str,
        job: &NewJob,
    ) -> Result<bool, StoreError> {
        let mut tx = self.system_write().await?;
        let job_id = new_id();
        let won = sqlx::query(
            "INSERT INTO cron_runs (name, slot, job_id, node, claimed_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(slot)
        .bind(&job_id)
        .bind(node)
        .bind(now_ms())
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        if won {
            insert(tx.conn(), job).await?;
        }
        tx.commit().await?;
        Ok(won)
    }

    /// The latest slot of schedule `name` that any node ran.
    pub async fn last_cron_slot(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let mut tx = self.system_read().await?;
        let slot: Option<i64> =
            sqlx::query_scalar("SELECT MAX(slot) FROM cron_runs WHERE name = $1")
                .bind(name)
                .fetch_one(tx.conn())
                .await?;
        tx.commit().await?;
        Ok(slot)
    }

    /// Deletes done jobs, and cron slot records, last touched before `before`. Dead jobs
    /// stay until an operator retries them.
    pub async fn purge_jobs(&self, before: i64) -> Result<u64, StoreError> {
        let mut tx = self.system_write().await?;
        let n = sqlx::query("DELETE FROM jobs WHERE state = 'done' AND updated_at < $1")
            .bind(before)
            .execute(tx.conn())
            .await?
            .rows_affected();
        // Keep each schedule's latest slot: catch-up after downtime starts from it.
        sqlx::query(
            "DELETE FROM cron_runs WHERE claimed_at < $1 \
             AND slot < (SELECT MAX(c.slot) FROM cron_runs c WHERE c.name = cron_runs.name)",
        )
        .bind(before)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(n)
    }
}
