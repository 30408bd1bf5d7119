//! Batched last-seen times: a poll only records the time in memory; a
//! background task writes the batch in one transaction every flush interval,
//! or as soon as the batch reaches its size limit, and once more at shutdown.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rampart_db::Db;
use tokio::sync::{Notify, watch};

use crate::observe::metrics::Metrics;

/// The default flush interval.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// The default batch size that triggers an early flush (and the size of
/// each written transaction).
pub const DEFAULT_BATCH_SIZE: usize = 1000;

#[derive(Debug)]
pub(crate) struct LastSeen {
    pending: Mutex<HashMap<String, i64>>,
    batch_size: usize,
    full: Notify,
    metrics: Arc<Metrics>,
}

impl LastSeen {
    pub(crate) fn new(batch_size: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
            batch_size: batch_size.max(1),
            full: Notify::new(),
            metrics,
        }
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        // Plain map inserts cannot be left half-done by a panic elsewhere.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes that `device_id` was seen at `time` (Unix seconds).
    pub(crate) fn record(&self, device_id: &str, time: i64) {
        let len = {
            let mut pending = self.pending();
            match pending.get_mut(device_id) {
                Some(t) => *t = (*t).max(time),
                None => {
                    pending.insert(device_id.to_owned(), time);
                }
            }
            pending.len()
        };
        self.metrics
            .last_seen_pending
            .store(len as u64, Ordering::Relaxed);
        if len >= self.batch_size {
            self.full.notify_one();
        }
    }

    /// Writes everything pending, in transactions of at most `batch_size`
    /// devices. A failed batch (and those after it) goes back into the map
    /// for the next attempt.
    pub(crate) async fn flush(&self, db: &Db) {
        let mut batch: Vec<(String, i64)> = self.pending().drain().collect();
        if batch.is_empty() {
            return;
        }
        self.metrics.last_seen_pending.store(0, Ordering::Relaxed);
        // A stable order keeps concurrent writers (several servers on one
        // PostgreSQL) from deadlocking on each other's rows.
        batch.sort_unstable();
        let mut chunks = batch.chunks(self.batch_size);
        while let Some(chunk) = chunks.next() {
            match db.touch_last_seen(chunk).await {
                Ok(()) => {
                    Metrics::inc(&self.metrics.last_seen_flushes);
                    self.metrics
                        .last_seen_rows
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    Metrics::inc(&self.metrics.last_seen_flush_errors);
                    crate::observe::log::warn(
                        "writing last-seen times failed (will retry)",
                        serde_json::json!({"error": e.to_string()}),
                    );
                    let mut pending = self.pending();
                    for (id, time) in chunk.iter().chain(chunks.by_ref().flatten()) {
                        let entry = pending.entry(id.clone()).or_insert(*time);
                        *entry = (*entry).max(*time);
                    }
                    self.metrics
                        .last_seen_pending
                        .store(pending.len() as u64, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

/// The background flusher: runs until `stop` turns true (or its sender is
/// dropped), then flushes one last time.
pub(crate) async fn run_flusher(
    last_seen: Arc<LastSeen>,
    db: Db,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    heart: super::heartbeat::Heart,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = last_seen.full.notified() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        last_seen.flush(&db).await;
        heart.beat(crate::helpers::unix_now());
    }
    last_seen.flush(&db).await;
}
