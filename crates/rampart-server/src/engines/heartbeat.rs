//! Engine heartbeats (issue 16, fail closed): every engine's loop beats once per round; the
//! beats are kept in memory (an atomic store, nothing else on the engine's path) and written
//! to `engine_heartbeats` together every [`FLUSH_INTERVAL`]. The detectors' watchdog reads them
//! back from the database, so an engine that stops beating, and a flusher that stops writing,
//! both show as stalled engines.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_db::{Db, DbError};

/// How often the beats are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);
/// No beat yet.
const NEVER: i64 = i64::MIN;

/// One engine's heart: [`Heart::beat`] is an atomic store.
#[derive(Clone, Debug)]
pub(crate) struct Heart {
    last: Arc<AtomicI64>,
}

impl Heart {
    /// Notes that the engine completed a round at `now` (Unix seconds).
    pub(crate) fn beat(&self, now: i64) {
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    /// The last beat (`None`: none yet).
    pub(crate) fn last(&self) -> Option<i64> {
        let at = self.last.load(Ordering::Relaxed);
        (at != NEVER).then_some(at)
    }
}

/// The server's engines' hearts, by engine name.
#[derive(Clone, Default)]
pub(crate) struct Heartbeats {
    hearts: Arc<Mutex<BTreeMap<String, Arc<AtomicI64>>>>,
}

impl Heartbeats {
    /// The heart of `engine` (the same one for the same name); from now on the watchdog
    /// expects it to beat.
    pub(crate) fn register(&self, engine: &str) -> Heart {
        let mut hearts = self.hearts.lock().unwrap_or_else(|e| e.into_inner());
        let last = hearts
            .entry(engine.to_owned())
            .or_insert_with(|| Arc::new(AtomicI64::new(NEVER)))
            .clone();
        Heart { last }
    }

    /// The engines the watchdog expects to beat.
    pub(crate) fn engines(&self) -> Vec<String> {
        let hearts = self.hearts.lock().unwrap_or_else(|e| e.into_inner());
        hearts.keys().cloned().collect()
    }

    /// Every registered engine's beat as the watchdog judges it: its stored beat (`stored`, as
    /// [`rampart_db::Db::engine_heartbeats`] reads them), a beat from before `started_at` (a
    /// previous run of the server) not counted.
    pub(crate) fn stored_beats(
        &self,
        stored: &[(String, i64)],
        started_at: i64,
    ) -> Vec<rampart_incident::detect::Beat> {
        self.engines()
            .into_iter()
            .map(|engine| {
                let beat_at = stored
                    .iter()
                    .find(|(name, _)| *name == engine)
                    .map(|(_, at)| *at)
                    .filter(|at| *at >= started_at);
                rampart_incident::detect::Beat { engine, beat_at }
            })
            .collect()
    }

    /// Writes every engine's last beat (those that beat at all) in one transaction.
    pub(crate) async fn flush(&self, db: &Db) -> Result<(), DbError> {
        let beats: Vec<(String, i64)> = {
            let hearts = self.hearts.lock().unwrap_or_else(|e| e.into_inner());
            hearts
                .iter()
                .map(|(engine, last)| (engine.clone(), last.load(Ordering::Relaxed)))
                .filter(|(_, at)| *at != NEVER)
                .collect()
        };
        db.beat_engines(&beats).await
    }

    /// Writes the beats every [`FLUSH_INTERVAL`] until shutdown, and once more at the end.
    pub(crate) async fn run_flusher(
        self,
        db: Db,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => {}
            }
            if let Err(e) = self.flush(&db).await {
                // Not fatal: the beats are written at the next round; if writing keeps failing,
                // the watchdog sees every engine stall.
                crate::observe::log::warn(
                    "writing engine heartbeats",
                    serde_json::json!({"error": e.to_string()}),
                );
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heart_keeps_its_latest_beat_and_registering_twice_gives_the_same_heart() {
        let beats = Heartbeats::default();
        let a = beats.register("campaigns");
        a.beat(10);
        a.beat(5);
        let again = beats.register("campaigns");
        assert_eq!(again.last.load(Ordering::Relaxed), 10);
        beats.register("webhooks");
        assert_eq!(beats.engines(), ["campaigns", "webhooks"]);
        // Stored beats from before the start do not count; an engine never stored has none.
        let stored = [("campaigns".to_owned(), 99), ("webhooks".to_owned(), 100)];
        let judged: Vec<Option<i64>> = beats
            .stored_beats(&stored, 100)
            .into_iter()
            .map(|b| b.beat_at)
            .collect();
        assert_eq!(judged, [None, Some(100)]);
        beats.register("alerts");
        assert_eq!(beats.stored_beats(&stored, 0)[0].beat_at, None);
    }
}
