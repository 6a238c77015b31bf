//! Group commit for [`Queue::admit`](crate::queue::Queue::admit).
//!
//! Every admission must be on disk before the webhook gets its response, and with
//! `synchronous=FULL` each commit waits for an fsync. One commit per delivery would cap intake
//! at the disk's fsync rate, so admissions go through a channel to one writer task, which
//! takes every request waiting (up to [`MAX_BATCH`]) and handles them in one transaction.
//! Each request still gets its own result, and duplicate checks see the rows of earlier
//! requests in the same batch. If the commit fails, every request in the batch fails and
//! nothing of it is kept.

use super::{as_millis, is_duplicate};
use crate::clock::SharedClock;
use crate::queue::{
    Admission, DELIVERY_COUNT_RETENTION, Delivery, QueueError, QueueResult, QueueSettings,
    hour_start_ms,
};
use crate::sqlite::SharedConnection;
use rusqlite::{Connection, TransactionBehavior, params};
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, oneshot};

/// Largest number of admissions committed together.
const MAX_BATCH: usize = 256;

/// How often the writer also deletes delivery records older than the event id retention.
const PURGE_INTERVAL_MS: i64 = 60_000;

/// A job serialized by the caller, so the writer only writes.
pub(super) struct PreparedJob {
    pub id: String,
    pub instance: String,
    pub spec: String,
}

pub(super) struct Request {
    pub delivery: Delivery,
    pub jobs: Vec<PreparedJob>,
    pub reply: oneshot::Sender<QueueResult<Admission>>,
}

/// Starts the writer task; it ends when every sender is dropped.
pub(super) fn spawn_writer(
    conn: SharedConnection,
    settings: QueueSettings,
    clock: SharedClock,
    work: Arc<Notify>,
) -> mpsc::Sender<Request> {
    let (sender, receiver) = mpsc::channel(MAX_BATCH * 4);
    tokio::spawn(write_batches(conn, settings, clock, work, receiver));
    sender
}

async fn write_batches(
    conn: SharedConnection,
    settings: QueueSettings,
    clock: SharedClock,
    work: Arc<Notify>,
    mut receiver: mpsc::Receiver<Request>,
) {
    let mut last_purge_ms = 0;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let now = clock.now_ms();
        let purge = now - last_purge_ms > PURGE_INTERVAL_MS;
        let settings = settings.clone();
        let requests = std::mem::take(&mut batch);
        let result = conn
            .call(move |conn| {
                let outcomes = commit_batch(conn, &requests, &settings, now, purge);
                Ok::<_, QueueError>((requests, outcomes))
            })
            .await;
        let Ok((requests, outcomes)) = result else {
            // The blocking task itself failed; the requests went with it, and their senders
            // see the reply channel closed.
            continue;
        };
        if purge && outcomes.is_ok() {
            last_purge_ms = now;
        }
        answer(requests, outcomes, &work);
    }
}

fn answer(requests: Vec<Request>, outcomes: rusqlite::Result<Vec<Admission>>, work: &Notify) {
    match outcomes {
        Ok(admissions) => {
            let queued = admissions
                .iter()
                .any(|a| matches!(a, Admission::Accepted { jobs } if *jobs > 0));
            for (request, admission) in requests.into_iter().zip(admissions) {
                let _ = request.reply.send(Ok(admission));
            }
            if queued {
                work.notify_waiters();
            }
        }
        Err(err) => {
            for request in requests {
                let _ = request
                    .reply
                    .send(Err(QueueError::Unavailable(err.to_string())));
            }
        }
    }
}

fn commit_batch(
    conn: &mut Connection,
    requests: &[Request],
    settings: &QueueSettings,
    now: i64,
    purge: bool,
) -> rusqlite::Result<Vec<Admission>> {
    let window_start = now - as_millis(settings.duplicate_window);
    let max_attempts = i64::from(settings.max_attempts);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if purge {
        let before = now - as_millis(settings.event_id_retention);
        tx.execute("DELETE FROM deliveries WHERE accepted_at < ?1", [before])?;
        let counts_before = now - as_millis(DELIVERY_COUNT_RETENTION);
        tx.execute(
            "DELETE FROM delivery_counts WHERE hour_start < ?1",
            [counts_before],
        )?;
    }
    let mut admissions = Vec::with_capacity(requests.len());
    {
        let mut record = tx.prepare_cached(
            "INSERT INTO deliveries (instance, event_id, content_key, accepted_at)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO jobs (id, instance, spec, max_attempts, state, run_at)
             VALUES (?1, ?2, ?3, ?4, 'ready', ?5)",
        )?;
        let mut count = tx.prepare_cached(
            "INSERT INTO delivery_counts (instance, hour_start, count) VALUES (?1, ?2, 1)
             ON CONFLICT (instance, hour_start) DO UPDATE SET count = count + 1",
        )?;
        for request in requests {
            let delivery = &request.delivery;
            if is_duplicate(&tx, delivery, window_start)? {
                admissions.push(Admission::Duplicate);
                continue;
            }
            record.execute(params![
                delivery.instance,
                delivery.event_id,
                delivery.content_key,
                now
            ])?;
            count.execute(params![delivery.instance, hour_start_ms(now)])?;
            for job in &request.jobs {
                insert.execute(params![job.id, job.instance, job.spec, max_attempts, now])?;
            }
            admissions.push(Admission::Accepted {
                jobs: request.jobs.len(),
            });
        }
    }
    tx.commit()?;
    Ok(admissions)
}
