//! Live campaign progress: `GET /console/campaigns/{id}/live`, a server-sent event stream the
//! campaign page's script follows, so nobody reloads (or polls) to watch a rollout.
//!
//! Bounded on every side: a token (however many sessions it logs in) may hold
//! [`MAX_STREAMS_PER_TOKEN`] streams and the server [`super::ConsoleConfig::max_live_streams`],
//! half the management listener's connections, so streams never crowd out the API (beyond
//! either: 429); however many browsers watch a campaign, its progress is
//! read from the database at most once per [`REFRESH`] (the readings are shared); a stream
//! sends an event only when the progress changed, ends when the campaign has ended, and ends
//! when its session does (checked every [`SESSION_CHECK`], without counting as a use of the
//! session, so an open page does not keep it from idling out; the browser's `EventSource` then
//! reconnects, and is refused if the session is gone).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Console;
use super::layout::error_page;
use crate::listen::http::ApiError;
use crate::operator::campaigns::{figures_of, loaded};

/// Live streams one token may hold at once, over all its sessions (a few tabs on a few
/// machines). Per token, not per session: logging in again does not buy more.
pub(crate) const MAX_STREAMS_PER_TOKEN: u32 = 8;
/// A campaign's progress is read at most this often, whoever watches.
const REFRESH: Duration = Duration::from_secs(2);
/// A reading nobody refreshed for this long is forgotten.
const FORGET: Duration = Duration::from_secs(60);
/// A stream checks this often that its session is still live.
const SESSION_CHECK: Duration = Duration::from_secs(30);
/// A comment keeps quiet streams (and the listener's idle timeout) alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Open streams per token, and shared readings per campaign.
#[derive(Default)]
pub(crate) struct LiveStreams {
    open: Mutex<Open>,
    readings: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Reading>>>>>,
}

#[derive(Default)]
struct Open {
    total: u32,
    per_token: HashMap<String, u32>,
}

/// A campaign's progress as last read.
#[derive(Clone)]
struct Reading {
    at: Instant,
    progress: Value,
    ended: bool,
}

/// One open stream; closing it (dropping the stream) frees its place.
struct Slot {
    streams: Arc<LiveStreams>,
    token: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_token.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_token.remove(&self.token);
            }
        }
    }
}

impl LiveStreams {
    /// A place for one more stream of `token`, or why there is none (`max_total`: the
    /// server's cap).
    fn open(self: &Arc<Self>, token: &str, max_total: u32) -> Result<Slot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mine = open.per_token.get(token).copied().unwrap_or(0);
        if mine >= MAX_STREAMS_PER_TOKEN {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_live_views",
                format!(
                    "this token's sessions already follow {MAX_STREAMS_PER_TOKEN} live views; close a console tab and reload"
                ),
            ));
        }
        if open.total >= max_total {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_live_views",
                "the server follows as many live views as it allows; reload later",
            ));
        }
        open.total += 1;
        open.per_token.insert(token.to_owned(), mine + 1);
        Ok(Slot {
            streams: self.clone(),
            token: token.to_owned(),
        })
    }

    /// Streams open now, in all and for `token`.
    #[cfg(test)]
    fn count(&self, token: &str) -> (u32, u32) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        (open.total, open.per_token.get(token).copied().unwrap_or(0))
    }
}

impl Console {
    /// The campaign's progress, read afresh only if the last reading (anyone's) is older than
    /// [`REFRESH`]; concurrent readers of one campaign wait for one reading.
    async fn progress(&self, id: &str) -> Result<Reading, ApiError> {
        let cell = {
            let mut readings = self.live.readings.lock().unwrap_or_else(|e| e.into_inner());
            // Readings nobody has refreshed for a while (campaigns nobody watches any more, ids
            // that were never campaigns) are dropped; ones being read are kept.
            readings.retain(|_, cell| {
                cell.try_lock().map_or(true, |r| {
                    r.as_ref().is_some_and(|r| r.at.elapsed() < FORGET)
                })
            });
            readings.entry(id.to_owned()).or_default().clone()
        };
        let mut last = cell.lock().await;
        if let Some(reading) = last.as_ref()
            && reading.at.elapsed() < REFRESH
        {
            return Ok(reading.clone());
        }
        let c = loaded(&self.api, id).await?;
        let (figures, _) = figures_of(&self.api, &c).await?;
        let wave = |w: &rampart_rollout::report::WaveFigures| {
            json!({
                "name": w.name,
                "devices": w.devices,
                "succeeded": w.succeeded,
                "failed": w.failed,
                "rolled_back": w.rolled_back,
                "pending": w.devices.saturating_sub(w.succeeded + w.failed),
                "success_rate": w.success_rate.map(|r| format!("{r:.1}%")),
            })
        };
        let progress = json!({
            "status": c.state.status.as_str(),
            "wave": c.state.wave,
            "waves": figures.as_ref().map(|f| f.waves.iter().map(wave).collect::<Vec<_>>()),
            "total": figures.as_ref().map(|f| wave(&f.total)),
        });
        let reading = Reading {
            at: Instant::now(),
            progress,
            ended: c.state.status.is_terminal(),
        };
        *last = Some(reading.clone());
        Ok(reading)
    }
}

/// The stream's state between events.
struct Follow {
    console: Arc<Console>,
    headers: HeaderMap,
    campaign: String,
    last_sent: Option<Value>,
    session_checked: Instant,
    ended: bool,
    _slot: Slot,
}

/// `GET /console/campaigns/{id}/live`.
pub(super) async fn stream(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let session = match console.session(&headers).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return error_page(
                &ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "session_ended",
                    "your console session has ended; log in again",
                ),
                None,
            );
        }
        Err(e) => return error_page(&e, None),
    };
    // An unknown campaign is refused before a place is taken.
    if let Err(e) = console.progress(&id).await {
        return error_page(&e, Some(&session));
    }
    let slot = match console
        .live
        .open(session.caller().token_id(), console.config.max_live_streams)
    {
        Ok(slot) => slot,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let follow = Follow {
        console: console.clone(),
        headers,
        campaign: id,
        last_sent: None,
        session_checked: Instant::now(),
        ended: false,
        _slot: slot,
    };
    let events = futures_util::stream::unfold(follow, |mut follow| async move {
        loop {
            if follow.ended {
                return None;
            }
            if follow.last_sent.is_some() {
                tokio::time::sleep(REFRESH).await;
            }
            if follow.session_checked.elapsed() >= SESSION_CHECK {
                match follow.console.session_is_live(&follow.headers).await {
                    Ok(true) => follow.session_checked = Instant::now(),
                    _ => return None,
                }
            }
            let Ok(reading) = follow.console.progress(&follow.campaign).await else {
                return None;
            };
            follow.ended = reading.ended;
            if follow.last_sent.as_ref() != Some(&reading.progress) {
                let event = Event::default()
                    .event("progress")
                    .data(reading.progress.to_string());
                follow.last_sent = Some(reading.progress);
                return Some((Ok::<_, Infallible>(event), follow));
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_capped_per_token_and_freed_when_closed() {
        let live = Arc::new(LiveStreams::default());
        let slots: Vec<Slot> = (0..MAX_STREAMS_PER_TOKEN)
            .map(|_| live.open("a", 128).unwrap())
            .collect();
        let refused = live.open("a", 128).err().unwrap();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        // Another token has its own places.
        let other = live.open("b", 128).unwrap();
        assert_eq!(
            live.count("a"),
            (MAX_STREAMS_PER_TOKEN + 1, MAX_STREAMS_PER_TOKEN)
        );
        drop(slots);
        assert_eq!(live.count("a"), (1, 0));
        drop(other);
        assert_eq!(live.count("b"), (0, 0));
        assert!(live.open("a", 128).is_ok());
    }

    #[test]
    fn the_server_wide_cap_holds_across_sessions() {
        let live = Arc::new(LiveStreams::default());
        let slots: Vec<Slot> = (0..20)
            .map(|i| live.open(&format!("t{}", i % 5), 20).unwrap())
            .collect();
        assert!(live.open("new", 20).is_err());
        drop(slots);
        assert!(live.open("new", 20).is_ok());
    }
}
