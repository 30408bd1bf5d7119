//! Actions: what the device is told to do with an assignment, and what its feedback does.
//!
//! An action is one assignment of one release to one device, seen through DDI. Its type comes
//! from the assignment (campaign or plain): `forced`, `soft`, `download_only`, or `timeforced`
//! (soft until its force time, forced from then on). The feedback rules follow hawkBit, with
//! one deliberate difference for download-only actions closed without a download (below).

use crate::wire::{Execution, Finished, Mode, Window};

/// How the device should treat the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionType {
    Forced,
    Soft,
    DownloadOnly,
    /// Soft until `forced_at` (Unix seconds), forced from then on.
    TimeForced {
        forced_at: i64,
    },
}

impl ActionType {
    /// From the stored assignment: its type name and, for `timeforced`, its force time.
    /// Unknown names are treated as forced (the server validates types when it stores them).
    pub fn from_stored(update_type: &str, forced_at: i64) -> ActionType {
        match update_type {
            "soft" => ActionType::Soft,
            "download_only" => ActionType::DownloadOnly,
            "timeforced" => ActionType::TimeForced { forced_at },
            _ => ActionType::Forced,
        }
    }

    /// Whether the device must act now rather than when it likes.
    pub fn forced_now(self, now: i64) -> bool {
        match self {
            ActionType::Forced | ActionType::DownloadOnly => true,
            ActionType::Soft => false,
            ActionType::TimeForced { forced_at } => now >= forced_at,
        }
    }
}

/// The device's maintenance window: none configured, open or closed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    NoWindow,
    Open,
    Closed,
}

/// `deployment.download`, `deployment.update` and `deployment.maintenanceWindow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentModes {
    pub download: Mode,
    pub update: Mode,
    pub window: Option<Window>,
}

/// hawkBit's table: download is forced for forced, download-only and time-forced past its
/// time, otherwise attempt; update is skip for download-only and while a window is closed,
/// otherwise the same as download.
pub fn deployment_modes(ty: ActionType, window: WindowState, now: i64) -> DeploymentModes {
    let download = if ty.forced_now(now) {
        Mode::Forced
    } else {
        Mode::Attempt
    };
    let update = match (ty, window) {
        (ActionType::DownloadOnly, _) | (_, WindowState::Closed) => Mode::Skip,
        _ => download,
    };
    DeploymentModes {
        download,
        update,
        window: match window {
            WindowState::NoWindow => None,
            WindowState::Open => Some(Window::Available),
            WindowState::Closed => Some(Window::Unavailable),
        },
    }
}

/// The `c` query parameter of a deploymentBase link: opaque, but it changes whenever the
/// document would (a time-forced action turning forced, a window opening or closing), so a
/// client's cached poll answer goes stale exactly then.
pub fn cache_buster(action_id: u64, modes: DeploymentModes) -> i32 {
    let mut h = action_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= match modes.download {
        Mode::Forced => 0x10,
        Mode::Attempt => 0x20,
        Mode::Skip => 0x30,
    };
    h ^= match modes.update {
        Mode::Forced => 0x100,
        Mode::Attempt => 0x200,
        Mode::Skip => 0x300,
    };
    h ^= match modes.window {
        None => 0x1000,
        Some(Window::Available) => 0x2000,
        Some(Window::Unavailable) => 0x3000,
    };
    (h ^ (h >> 32)) as i32
}

/// Where an action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionState {
    /// Offered to the device (possibly in progress).
    Open,
    /// Withdrawn by the server; the device has not confirmed yet.
    Canceling,
    /// Closed: installed.
    Finished,
    /// Closed: failed.
    Error,
    /// Closed: the device confirmed the cancellation.
    Canceled,
    /// Closed: a download-only action whose release was downloaded.
    Downloaded,
}

impl ActionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::Open => "open",
            ActionState::Canceling => "canceling",
            ActionState::Finished => "finished",
            ActionState::Error => "error",
            ActionState::Canceled => "canceled",
            ActionState::Downloaded => "downloaded",
        }
    }

    pub fn parse(s: &str) -> Option<ActionState> {
        Some(match s {
            "open" => ActionState::Open,
            "canceling" => ActionState::Canceling,
            "finished" => ActionState::Finished,
            "error" => ActionState::Error,
            "canceled" => ActionState::Canceled,
            "downloaded" => ActionState::Downloaded,
            _ => return None,
        })
    }

    /// Still the device's business (open or being cancelled).
    pub fn is_active(self) -> bool {
        matches!(self, ActionState::Open | ActionState::Canceling)
    }

    /// hawkBit's name for `actionHistory.status`.
    pub fn hawkbit_status(self) -> &'static str {
        match self {
            ActionState::Open => "RUNNING",
            ActionState::Canceling => "CANCELING",
            ActionState::Finished => "FINISHED",
            ActionState::Error => "ERROR",
            ActionState::Canceled => "CANCELED",
            ActionState::Downloaded => "DOWNLOADED",
        }
    }
}

/// What a deployment feedback does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackEffect {
    /// The action's state afterwards.
    pub state: ActionState,
    /// The native report it counts as (campaign gates, inventory), if any: `installed`,
    /// `failed`, `downloaded`, `downloading`, `installing` or `cancelled`.
    pub report: Option<&'static str>,
    /// A note for the report's details when the mapping is not the obvious one.
    pub note: Option<&'static str>,
}

/// Why a feedback is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeedbackError {
    /// The action is closed: hawkBit answers 410 Gone.
    #[error("the action is closed; feedback for it is no longer accepted")]
    Closed,
    /// Cancellation feedback for an action that is not being cancelled (hawkBit: 405).
    #[error("the action is not being cancelled")]
    NotCanceling,
}

/// A feedback on `deploymentBase/{id}/feedback`.
///
/// - `closed` + `failure` closes as failed; `closed` + `success`/`none` closes as installed.
/// - `downloaded` closes a download-only action (downloaded); for other types it is progress.
/// - `download` and `proceeding`/`scheduled`/`resumed` are progress.
/// - `canceled` and `rejected` are recorded in the history only; they close nothing.
///
/// Deviation from hawkBit: a download-only action closed with `closed` + `success` is closed
/// but counted as `cancelled`, not as a success: SWUpdate answers `update: skip` that way
/// without downloading anything, and a campaign must not count a device that did nothing as
/// having downloaded the release.
pub fn deployment_feedback(
    state: ActionState,
    ty: ActionType,
    execution: Execution,
    finished: Finished,
) -> Result<FeedbackEffect, FeedbackError> {
    if !state.is_active() {
        return Err(FeedbackError::Closed);
    }
    let effect = |state, report| FeedbackEffect {
        state,
        report,
        note: None,
    };
    Ok(match execution {
        Execution::Closed if finished == Finished::Failure => {
            effect(ActionState::Error, Some("failed"))
        }
        Execution::Closed if ty == ActionType::DownloadOnly => FeedbackEffect {
            state: ActionState::Canceled,
            report: Some("cancelled"),
            note: Some(
                "the device closed a download-only action without reporting it downloaded (SWUpdate skips such actions)",
            ),
        },
        Execution::Closed => effect(ActionState::Finished, Some("installed")),
        Execution::Downloaded if ty == ActionType::DownloadOnly => {
            effect(ActionState::Downloaded, Some("downloaded"))
        }
        Execution::Downloaded => effect(state, Some("downloaded")),
        Execution::Download => effect(state, Some("downloading")),
        Execution::Proceeding | Execution::Scheduled | Execution::Resumed => {
            effect(state, Some("installing"))
        }
        Execution::Canceled | Execution::Rejected => effect(state, None),
    })
}

/// What a cancellation feedback does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelEffect {
    pub state: ActionState,
    /// Whether a native `cancelled` report is recorded.
    pub report_cancelled: bool,
}

/// A feedback on `cancelAction/{id}/feedback`: `closed` + `success`/`none` confirms the
/// cancellation; `closed` + `failure` or `rejected` refuses it and the action runs on; anything
/// else is informational. Only for an action being cancelled (or already cancelled: a repeated
/// confirmation is accepted).
pub fn cancel_feedback(
    state: ActionState,
    execution: Execution,
    finished: Finished,
) -> Result<CancelEffect, FeedbackError> {
    match state {
        ActionState::Canceling => Ok(match (execution, finished) {
            (Execution::Closed, Finished::Failure) | (Execution::Rejected, _) => CancelEffect {
                state: ActionState::Open,
                report_cancelled: false,
            },
            (Execution::Closed, _) => CancelEffect {
                state: ActionState::Canceled,
                report_cancelled: true,
            },
            _ => CancelEffect {
                state,
                report_cancelled: false,
            },
        }),
        ActionState::Canceled => Ok(CancelEffect {
            state,
            report_cancelled: false,
        }),
        _ => Err(FeedbackError::NotCanceling),
    }
}
