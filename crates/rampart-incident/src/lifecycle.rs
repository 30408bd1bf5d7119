//! How an incident moves: forward only through detected -> contained -> eradicated ->
//! recovered -> closed, each state's time set when it is reached, acknowledged once, and the
//! response's timings computed from those times. Every time is an argument (Unix seconds).

use serde::{Deserialize, Serialize};

use crate::model::IncidentState;

/// Why a move was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error(
        "an incident moves forward only (detected, contained, eradicated, recovered, closed): it is {from} and cannot become {to}"
    )]
    Backwards {
        from: &'static str,
        to: &'static str,
    },
    #[error("the incident is closed; open a new one if the cause returns")]
    Closed,
}

/// Where an incident stands: its state, when it reached each state, and its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub state: IncidentState,
    /// When the earliest evidence happened (never after `detected_at`).
    pub first_signal_at: i64,
    pub detected_at: i64,
    pub acknowledged_at: Option<i64>,
    pub contained_at: Option<i64>,
    pub eradicated_at: Option<i64>,
    pub recovered_at: Option<i64>,
    pub closed_at: Option<i64>,
}

/// The response's timings, seconds (`None` until the state is reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Timings {
    /// detected_at - first_signal_at.
    pub to_detect: i64,
    /// acknowledged_at - detected_at.
    pub to_acknowledge: Option<i64>,
    /// contained_at - detected_at.
    pub to_contain: Option<i64>,
    /// eradicated_at - detected_at.
    pub to_eradicate: Option<i64>,
    /// recovered_at - detected_at.
    pub to_recover: Option<i64>,
    /// closed_at - detected_at.
    pub to_close: Option<i64>,
}

impl Lifecycle {
    /// A new incident, detected at `detected_at` from evidence of `first_signal_at` (a first
    /// signal stamped in the future by a skewed clock counts as `detected_at`).
    pub fn opened(first_signal_at: i64, detected_at: i64) -> Lifecycle {
        Lifecycle {
            state: IncidentState::Detected,
            first_signal_at: first_signal_at.min(detected_at),
            detected_at,
            acknowledged_at: None,
            contained_at: None,
            eradicated_at: None,
            recovered_at: None,
            closed_at: None,
        }
    }

    /// Moves to `to` at `at`, setting `to`'s time. States may be skipped forward (a false
    /// positive is closed from detected; the skipped states keep no time), never repeated or
    /// gone back to.
    pub fn move_to(&mut self, to: IncidentState, at: i64) -> Result<(), LifecycleError> {
        if self.state == IncidentState::Closed {
            return Err(LifecycleError::Closed);
        }
        if !self.state.may_move_to(to) {
            return Err(LifecycleError::Backwards {
                from: self.state.as_str(),
                to: to.as_str(),
            });
        }
        // A time before detection (a skewed caller) is recorded as the detection time, so no
        // timing is negative.
        let at = at.max(self.detected_at);
        let slot = match to {
            IncidentState::Detected => None,
            IncidentState::Contained => Some(&mut self.contained_at),
            IncidentState::Eradicated => Some(&mut self.eradicated_at),
            IncidentState::Recovered => Some(&mut self.recovered_at),
            IncidentState::Closed => Some(&mut self.closed_at),
        };
        if let Some(slot) = slot {
            *slot = Some(at);
        }
        self.state = to;
        Ok(())
    }

    /// Records the first acknowledgement; `Ok(false)` if it was already acknowledged (the
    /// first one is kept).
    pub fn acknowledge(&mut self, at: i64) -> Result<bool, LifecycleError> {
        if self.state == IncidentState::Closed {
            return Err(LifecycleError::Closed);
        }
        if self.acknowledged_at.is_some() {
            return Ok(false);
        }
        self.acknowledged_at = Some(at.max(self.detected_at));
        Ok(true)
    }

    /// The response's timings so far.
    pub fn timings(&self) -> Timings {
        let since_detected = |t: Option<i64>| t.map(|t| (t - self.detected_at).max(0));
        Timings {
            to_detect: (self.detected_at - self.first_signal_at).max(0),
            to_acknowledge: since_detected(self.acknowledged_at),
            to_contain: since_detected(self.contained_at),
            to_eradicate: since_detected(self.eradicated_at),
            to_recover: since_detected(self.recovered_at),
            to_close: since_detected(self.closed_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use IncidentState::*;

    #[test]
    fn an_incident_moves_forward_and_each_state_keeps_its_time() {
        let mut l = Lifecycle::opened(900, 1_000);
        l.move_to(Contained, 1_030).unwrap();
        l.move_to(Eradicated, 1_400).unwrap();
        l.move_to(Recovered, 1_600).unwrap();
        l.move_to(Closed, 2_000).unwrap();
        assert_eq!(
            l.timings(),
            Timings {
                to_detect: 100,
                to_acknowledge: None,
                to_contain: Some(30),
                to_eradicate: Some(400),
                to_recover: Some(600),
                to_close: Some(1_000),
            }
        );
    }

    #[test]
    fn an_incident_never_moves_back_or_stays_nor_moves_once_closed() {
        let mut l = Lifecycle::opened(1_000, 1_000);
        l.move_to(Eradicated, 1_100).unwrap();
        let before = l;
        assert_eq!(
            l.move_to(Contained, 1_200),
            Err(LifecycleError::Backwards {
                from: "eradicated",
                to: "contained"
            })
        );
        assert!(l.move_to(Eradicated, 1_200).is_err());
        assert_eq!(l, before, "a refused move changes nothing");
        l.move_to(Closed, 1_300).unwrap();
        assert_eq!(l.move_to(Closed, 1_400), Err(LifecycleError::Closed));
        assert_eq!(l.acknowledge(1_400), Err(LifecycleError::Closed));
    }

    #[test]
    fn skipped_states_keep_no_time_so_a_false_positive_has_no_containment_timing() {
        let mut l = Lifecycle::opened(1_000, 1_000);
        l.move_to(Closed, 1_050).unwrap();
        let t = l.timings();
        assert_eq!(
            (t.to_contain, t.to_recover, t.to_close),
            (None, None, Some(50))
        );
    }

    #[test]
    fn the_first_acknowledgement_is_kept() {
        let mut l = Lifecycle::opened(1_000, 1_000);
        assert_eq!(l.acknowledge(1_010), Ok(true));
        assert_eq!(l.acknowledge(1_500), Ok(false));
        assert_eq!(l.timings().to_acknowledge, Some(10));
    }

    #[test]
    fn skewed_clocks_never_make_a_timing_negative() {
        // A first signal stamped after detection, and a move stamped before it.
        let mut l = Lifecycle::opened(5_000, 1_000);
        assert_eq!(l.timings().to_detect, 0);
        l.move_to(Contained, 500).unwrap();
        assert_eq!(l.timings().to_contain, Some(0));
    }
}
