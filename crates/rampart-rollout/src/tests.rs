//! Rollout rules on a virtual clock: a fleet whose devices report after given delays, driven
//! through [`decide`] and [`apply`] tick by tick, as the server's engine does.

use serde_json::json;

use crate::report::{DeviceRecord, Outcome, figures, to_csv};
use crate::*;

fn spec(extra: serde_json::Value) -> CampaignSpec {
    let mut base = json!({
        "name": "fw 2.0",
        "release": "board-a/fw-2.0.0.bin",
        "targets": {"group": "all"},
        "phases": {"canary": {"devices": 10}, "waves": [{"percent": 25}, {"percent": 50}]},
        "gate": {"min_success_pct": 90, "max_failure_pct": 10, "min_results": 8, "min_observation_secs": 300},
    });
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    let spec: CampaignSpec = serde_json::from_value(base).unwrap();
    spec.validate().unwrap();
    spec
}

/// A virtual fleet: device `i` reports `outcome(i)` `delay(i)` seconds after its wave starts.
struct Fleet {
    plan: Plan,
    wave_started: Vec<Option<i64>>,
    outcome: Box<dyn Fn(u64) -> Outcome>,
    delay: Box<dyn Fn(u64) -> i64>,
}

impl Fleet {
    fn new(
        spec: &CampaignSpec,
        total: u64,
        outcome: impl Fn(u64) -> Outcome + 'static,
        delay: impl Fn(u64) -> i64 + 'static,
    ) -> Fleet {
        let plan = Plan::new(&spec.phases, &spec.gate, total).unwrap();
        Fleet {
            wave_started: vec![None; plan.waves()],
            plan,
            outcome: Box::new(outcome),
            delay: Box::new(delay),
        }
    }

    fn records(&self, now: i64) -> Vec<DeviceRecord> {
        (0..self.plan.total())
            .map(|i| {
                let wave = self.plan.wave_of(i);
                let (outcome, result_at) = match self.wave_started[wave] {
                    None => (Outcome::Waiting, None),
                    Some(s) if s + (self.delay)(i) <= now => {
                        (((self.outcome)(i)), Some(s + (self.delay)(i)))
                    }
                    Some(_) => (Outcome::Assigned, None),
                };
                DeviceRecord {
                    wave,
                    outcome,
                    reason: outcome.is_failure().then(|| "health_check_failed".into()),
                    result_at,
                }
            })
            .collect()
    }

    fn tally(&self, wave: usize, now: i64) -> Tally {
        figures(&self.plan, &self.records(now), Some(0)).waves[wave].tally()
    }

    /// Runs the engine every `tick` seconds until the campaign leaves `running` for good or
    /// `until`; returns the decisions taken with their times.
    fn run(
        &mut self,
        spec: &CampaignSpec,
        state: &mut CampaignState,
        tick: i64,
        until: i64,
    ) -> Vec<(i64, Decision)> {
        let mut taken = Vec::new();
        let mut now = state.wave_started;
        self.wave_started[state.wave].get_or_insert(now);
        while now <= until {
            let tally = self.tally(state.wave, now);
            let d = decide(spec, &self.plan, state, &tally, now);
            if !matches!(d, Decision::Wait(_)) {
                apply(state, &d, now);
                if let Decision::Advance { to } = d {
                    self.wave_started[to] = Some(now);
                }
                taken.push((now, d));
            }
            if !matches!(state.status, Status::Running) {
                break;
            }
            now += tick;
        }
        taken
    }
}

fn started(spec: &CampaignSpec, plan: &Plan) -> CampaignState {
    let mut state = CampaignState::draft();
    assert_eq!(
        act(&mut state, Action::Start, plan, &Tally::default(), 1_000),
        Ok(Effect::Started)
    );
    let _ = spec;
    state
}

#[test]
fn a_good_release_widens_wave_by_wave_to_every_device() {
    let spec = spec(json!({}));
    let mut fleet = Fleet::new(
        &spec,
        1000,
        |_| Outcome::Succeeded,
        |i| 30 + (i % 60) as i64,
    );
    let mut state = started(&spec, &fleet.plan);
    let taken = fleet.run(&spec, &mut state, 10, 100_000);
    assert_eq!(state.status, Status::Completed);
    assert_eq!(fleet.plan.bounds(), &[10, 250, 500, 1000]);
    let advances: Vec<i64> = taken.iter().map(|(t, _)| *t).collect();
    // Each gate waits for the observation time (300 s), not only for results.
    assert_eq!(advances, vec![1_300, 1_600, 1_900, 2_200]);
    assert!(matches!(taken[3].1, Decision::Complete));
    let f = figures(&fleet.plan, &fleet.records(100_000), state.started);
    assert_eq!(f.total.succeeded, 1000);
    assert_eq!(f.total.success_rate, Some(100.0));
    // Half the fleet ran the release when wave 2 (started at 1 600, up to 89 s per device)
    // had all reported; all of it when the last wave (started at 1 900) had.
    assert_eq!(f.time_to[0].seconds, Some(1_689 - 1_000));
    assert_eq!(f.time_to[3].seconds, Some(1_989 - 1_000));
}

#[test]
fn a_bad_release_halts_at_the_canary_and_asks_for_a_rollback() {
    let spec = spec(json!({"rollback_on_breach": true}));
    // Every third device fails its health check after the reboot.
    let mut fleet = Fleet::new(
        &spec,
        1000,
        |i| {
            if i % 3 == 0 {
                Outcome::RolledBack
            } else {
                Outcome::Succeeded
            }
        },
        |i| 20 + i as i64,
    );
    let mut state = started(&spec, &fleet.plan);
    let taken = fleet.run(&spec, &mut state, 1, 100_000);
    assert_eq!(state.status, Status::Paused);
    assert_eq!(state.wave, 0, "halted at the canary");
    let (at, decision) = &taken[0];
    let Decision::Halt {
        action,
        rollback,
        breach,
    } = decision
    else {
        panic!("{decision:?}")
    };
    assert_eq!((*action, *rollback), (BreachAction::Pause, true));
    assert_eq!(breach.kind, BreachKind::FailureRate);
    // The breach is judged on the report that causes it: two failures of ten devices is
    // more than 10 % of the wave, before the gate's minimum number of results.
    assert_eq!(breach.failed, 2);
    assert_eq!(*at, 1_000 + 20 + 3);
    assert_eq!(state.rolled_back_at, Some(*at));
    assert!(fleet.wave_started[1].is_none(), "wave 1 never started");
}

#[test]
fn abort_on_breach_ends_the_campaign() {
    let spec = spec(json!({"on_breach": "abort"}));
    let mut fleet = Fleet::new(&spec, 100, |_| Outcome::VerificationFailed, |_| 5);
    let mut state = started(&spec, &fleet.plan);
    fleet.run(&spec, &mut state, 1, 10_000);
    assert_eq!(state.status, Status::Aborted);
    assert_eq!(state.finished, Some(1_005));
    assert_eq!(state.rolled_back_at, None);
    let e = act(
        &mut state,
        Action::Resume,
        &fleet.plan,
        &Tally::default(),
        2_000,
    )
    .unwrap_err();
    assert!(e.to_string().contains("has ended"), "{e}");
}

#[test]
fn approval_gates_wait_for_an_operator() {
    let spec = spec(
        json!({"gate": {"min_results": 10, "require_approval": true, "min_success_pct": 90, "max_failure_pct": 10}}),
    );
    let mut fleet = Fleet::new(&spec, 100, |_| Outcome::Succeeded, |_| 5);
    let mut state = started(&spec, &fleet.plan);
    let taken = fleet.run(&spec, &mut state, 1, 10_000);
    assert_eq!(state.status, Status::AwaitingApproval);
    assert_eq!(taken.len(), 1);
    // Still waiting a day later: nothing moves on its own.
    let tally = fleet.tally(0, 90_000);
    assert!(matches!(
        decide(&spec, &fleet.plan, &state, &tally, 90_000),
        Decision::Wait(_)
    ));
    assert_eq!(
        act(&mut state, Action::Approve, &fleet.plan, &tally, 90_000),
        Ok(Effect::Advanced { to: 1 })
    );
    assert_eq!(
        (state.status, state.wave, state.wave_started),
        (Status::Running, 1, 90_000)
    );
}

#[test]
fn a_late_failure_while_awaiting_approval_still_halts() {
    let spec =
        spec(json!({"gate": {"min_results": 5, "require_approval": true, "max_failure_pct": 10}}));
    let plan = Plan::new(&spec.phases, &spec.gate, 100).unwrap();
    let mut state = started(&spec, &plan);
    state.status = Status::AwaitingApproval;
    let tally = Tally {
        devices: 10,
        succeeded: 8,
        failed: 2,
        rolled_back: 2,
        verification_failed: 0,
    };
    assert!(matches!(
        decide(&spec, &plan, &state, &tally, 5_000),
        Decision::Halt { .. }
    ));
}

#[test]
fn resuming_after_a_breach_accepts_the_failures_so_far_but_not_new_ones() {
    let spec = spec(json!({}));
    let plan = Plan::new(&spec.phases, &spec.gate, 1000).unwrap();
    let mut state = started(&spec, &plan);
    let mut tally = Tally {
        devices: 10,
        succeeded: 3,
        failed: 2,
        rolled_back: 2,
        verification_failed: 0,
    };
    let d = decide(&spec, &plan, &state, &tally, 1_100);
    apply(&mut state, &d, 1_100);
    assert_eq!(state.status, Status::Paused);
    assert_eq!(
        act(&mut state, Action::Resume, &plan, &tally, 1_200),
        Ok(Effect::Resumed)
    );
    assert_eq!(state.accepted_failures, 2);
    tally.succeeded = 8;
    assert!(matches!(
        decide(&spec, &plan, &state, &tally, 1_400),
        Decision::Advance { to: 1 }
    ));
    tally.failed = 4;
    assert!(matches!(
        decide(&spec, &plan, &state, &tally, 1_400),
        Decision::Halt { .. }
    ));
}

#[test]
fn a_manual_pause_stops_the_automatic_steps_until_resumed() {
    let spec = spec(json!({}));
    let plan = Plan::new(&spec.phases, &spec.gate, 1000).unwrap();
    let mut state = started(&spec, &plan);
    let all_good = Tally {
        devices: 10,
        succeeded: 10,
        ..Tally::default()
    };
    act(&mut state, Action::Pause, &plan, &all_good, 1_100).unwrap();
    assert!(matches!(
        decide(&spec, &plan, &state, &all_good, 5_000),
        Decision::Wait(_)
    ));
    act(&mut state, Action::Resume, &plan, &all_good, 5_000).unwrap();
    assert_eq!(state.accepted_failures, 0);
    assert_eq!(
        decide(&spec, &plan, &state, &all_good, 5_000),
        Decision::Advance { to: 1 }
    );
}

#[test]
fn gate_verdicts_at_their_edges() {
    let gate = Gate {
        min_success_pct: 90.0,
        max_failure_pct: 10.0,
        min_results: 5,
        min_observation_secs: 60,
        require_approval: false,
    };
    let t = |succeeded, failed| Tally {
        devices: 20,
        succeeded,
        failed,
        rolled_back: failed,
        verification_failed: 0,
    };
    // Two of twenty is exactly 10 %: allowed; three is more.
    assert!(matches!(
        judge(&gate, 1, &t(0, 2), 0, 0),
        Verdict::Pending(_)
    ));
    assert!(matches!(
        judge(&gate, 1, &t(0, 3), 0, 0),
        Verdict::Breach(_)
    ));
    // Enough results, failure rate among them too high.
    assert!(
        matches!(judge(&gate, 1, &t(10, 2), 0, 100), Verdict::Breach(b) if b.kind == BreachKind::FailureRate)
    );
    // Enough results and successes, but not observed long enough.
    assert!(
        matches!(judge(&gate, 1, &t(5, 0), 0, 59), Verdict::Pending(p) if p.contains("observed"))
    );
    assert_eq!(judge(&gate, 1, &t(5, 0), 0, 60), Verdict::Pass);
    // Later waves smaller than min_results pass on all their devices.
    let small = Tally {
        devices: 3,
        succeeded: 3,
        ..Tally::default()
    };
    assert_eq!(judge(&gate, 2, &small, 0, 60), Verdict::Pass);
    // Every device reported, success too low (failures within the limit).
    let low = Gate {
        min_success_pct: 99.0,
        max_failure_pct: 50.0,
        ..gate
    };
    assert!(
        matches!(judge(&low, 1, &t(19, 1), 0, 100), Verdict::Breach(b) if b.kind == BreachKind::SuccessRate)
    );
    assert!(matches!(
        judge(&low, 1, &t(18, 1), 0, 100),
        Verdict::Pending(_)
    ));
}

#[test]
fn operator_actions_refuse_what_the_status_does_not_allow() {
    let spec = spec(json!({}));
    let plan = Plan::new(&spec.phases, &spec.gate, 100).unwrap();
    let t = Tally::default();
    let mut s = CampaignState::draft();
    for a in [Action::Pause, Action::Resume, Action::Approve] {
        assert!(act(&mut s, a, &plan, &t, 0).is_err(), "{a:?} on a draft");
    }
    act(&mut s, Action::Start, &plan, &t, 0).unwrap();
    let e = act(&mut s, Action::Start, &plan, &t, 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot start a campaign that is running: it has already started"
    );
    assert!(act(&mut s, Action::Resume, &plan, &t, 0).is_err());
    assert!(act(&mut s, Action::Approve, &plan, &t, 0).is_err());
    act(&mut s, Action::Abort, &plan, &t, 0).unwrap();
    for a in [
        Action::Start,
        Action::Pause,
        Action::Resume,
        Action::Abort,
        Action::Approve,
    ] {
        assert!(act(&mut s, a, &plan, &t, 0).is_err(), "{a:?} after abort");
    }
}

#[test]
fn approving_after_a_fleet_rollback_is_refused() {
    let spec = spec(json!({"rollback_on_breach": true}));
    let plan = Plan::new(&spec.phases, &spec.gate, 100).unwrap();
    let mut s = started(&spec, &plan);
    let bad = Tally {
        devices: 10,
        failed: 5,
        ..Tally::default()
    };
    let d = decide(&spec, &plan, &s, &bad, 2_000);
    apply(&mut s, &d, 2_000);
    assert!(s.rolled_back_at.is_some());
    let e = act(&mut s, Action::Approve, &plan, &bad, 2_100).unwrap_err();
    assert!(e.to_string().contains("rolled back"), "{e}");
}

#[test]
fn specs_with_impossible_or_ambiguous_parts_are_refused() {
    let parse = |v: serde_json::Value| -> Result<(), String> {
        let s: CampaignSpec = serde_json::from_value(v).map_err(|e| e.to_string())?;
        s.validate().map_err(|e| e.to_string())
    };
    let ok = json!({"name": "x", "release": "a.bin", "targets": {"group": "g"}});
    assert_eq!(parse(ok.clone()), Ok(()));
    let with = |k: &str, v: serde_json::Value| {
        let mut s = ok.clone();
        s[k] = v;
        parse(s).unwrap_err()
    };
    assert!(with("targets", json!({})).contains("exactly one"));
    assert!(with("targets", json!({"group": "g", "devices": ["a"]})).contains("exactly one"));
    assert!(with("targets", json!({"filter": {}})).contains("whole fleet"));
    assert!(with("targets", json!({"devices": []})).contains("empty"));
    assert!(with("surprise", json!(1)).contains("unknown field"));
    assert!(with("phases", json!({"canary": {"percent": 0}})).contains("above 0"));
    assert!(with("phases", json!({"canary": {"percent": 120}})).contains("at most 100"));
    assert!(with("phases", json!({"canary": {"devices": 0}})).contains("at least 1"));
    assert!(
        with(
            "phases",
            json!({"canary": {"devices": 1}, "exponential": {"base": 1, "factor": 9}})
        )
        .contains("factor")
    );
    assert!(with("phases", json!({"canary": {"devices": 1}, "waves": [{"percent": 5}], "exponential": {"base": 1, "factor": 2}})).contains("not both"));
    assert!(with("gate", json!({"min_results": 0})).contains("min_results"));
    assert!(with("gate", json!({"max_failure_pct": -1})).contains("between 0 and 100"));
    assert!(with("rollback_release", json!("a.bin")).contains("own release"));
    assert!(with("name", json!("")).contains("name"));
    assert!(
        with(
            "policy",
            json!({"conditions": [{"attribute": "battery_pct", "op": "gte", "value": "high"}]})
        )
        .contains("compares numbers")
    );
    assert!(with("policy", json!({"conditions": [{"any": []}]})).contains("1 to 256"));
    assert!(with("update_type", json!("eventually")).contains("unknown variant"));
    assert!(with("update_type", json!("timeforced")).contains("force_after_secs between"));
    assert!(with("force_after_secs", json!(600)).contains("timeforced only"));
    let mut tf = ok.clone();
    tf["update_type"] = json!("timeforced");
    tf["force_after_secs"] = json!(30);
    assert!(parse(tf.clone()).unwrap_err().contains("between 60"));
    tf["force_after_secs"] = json!(3600);
    assert!(parse(tf).is_ok());
}

#[test]
fn time_forced_is_soft_until_its_time_then_forced() {
    assert_eq!(UpdateType::effective("timeforced", 100, 99), "soft");
    assert_eq!(UpdateType::effective("timeforced", 100, 100), "forced");
    for other in ["forced", "soft", "download_only"] {
        assert_eq!(UpdateType::effective(other, 100, 0), other);
        assert_eq!(UpdateType::effective(other, 0, 1000), other);
    }
}

fn device<'a>(
    hardware_id: &'a str,
    region: &'a str,
    tags: &'a [String],
    attributes: &'a serde_json::Map<String, serde_json::Value>,
) -> DeviceView<'a> {
    DeviceView {
        id: "d",
        hardware_id,
        region,
        firmware_version: "1.0.0",
        tags,
        attributes,
    }
}

#[test]
fn policies_decide_eligibility_and_conditions_hold_devices() {
    let policy: Policy = serde_json::from_value(json!({
        "hardware_ids": ["board-a"],
        "regions": ["eu"],
        "tags": ["lab", "field"],
        "channels": ["stable"],
        "conditions": [{"any": [
            {"attribute": "battery_pct", "op": "gte", "value": 30},
            {"attribute": "on_mains", "op": "eq", "value": true}
        ]}]
    }))
    .unwrap();
    let tags = vec!["field".to_string()];
    let stable = json!({"channel": "stable"}).as_object().unwrap().clone();
    assert_eq!(
        policy.eligible(&device("board-a", "eu", &tags, &stable)),
        Ok(())
    );
    assert_eq!(
        policy.eligible(&device("board-b", "eu", &tags, &stable)),
        Err(Ineligible::HardwareId)
    );
    assert_eq!(
        policy.eligible(&device("board-a", "us", &tags, &stable)),
        Err(Ineligible::Region)
    );
    assert_eq!(
        policy.eligible(&device("board-a", "eu", &[], &stable)),
        Err(Ineligible::Tag)
    );
    let beta = json!({"channel": "beta"}).as_object().unwrap().clone();
    assert_eq!(
        policy.eligible(&device("board-a", "eu", &tags, &beta)),
        Err(Ineligible::Channel)
    );
    let attrs = |v: serde_json::Value| v.as_object().unwrap().clone();
    assert!(policy.conditions_met(&attrs(json!({"battery_pct": 30}))));
    assert!(!policy.conditions_met(&attrs(json!({"battery_pct": 29.5}))));
    assert!(policy.conditions_met(&attrs(json!({"battery_pct": 5, "on_mains": true}))));
    assert!(!policy.conditions_met(&attrs(json!({"on_mains": "yes"}))));
    assert!(
        !policy.conditions_met(&attrs(json!({}))),
        "unknown means not met"
    );
    assert!(Policy::default().conditions_met(&attrs(json!({}))));
}

#[test]
fn filters_match_every_given_field() {
    let f: TargetFilter = serde_json::from_value(
        json!({"hardware_id": "board-a", "tag": "lab", "attributes": {"site": "berlin"}}),
    )
    .unwrap();
    let lab = vec!["lab".to_string()];
    let berlin = json!({"site": "berlin"}).as_object().unwrap().clone();
    let paris = json!({"site": "paris"}).as_object().unwrap().clone();
    assert!(f.matches(&device("board-a", "eu", &lab, &berlin)));
    assert!(!f.matches(&device("board-b", "eu", &lab, &berlin)));
    assert!(!f.matches(&device("board-a", "eu", &[], &berlin)));
    assert!(!f.matches(&device("board-a", "eu", &lab, &paris)));
}

#[test]
fn reports_count_outcomes_reasons_and_time_to_remediate() {
    let plan = Plan::new(
        &PhasePlan {
            canary: Size::Devices(2),
            waves: vec![],
            exponential: None,
        },
        &Gate::default(),
        4,
    )
    .unwrap();
    let rec = |wave, outcome, reason: Option<&str>, result_at| DeviceRecord {
        wave,
        outcome,
        reason: reason.map(String::from),
        result_at,
    };
    let records = vec![
        rec(0, Outcome::Succeeded, Some("ok"), Some(160)),
        rec(
            0,
            Outcome::RolledBack,
            Some("health_check_failed"),
            Some(170),
        ),
        rec(1, Outcome::Succeeded, Some("ok"), Some(400)),
        rec(1, Outcome::Failed, Some("=cmd|' /C calc'!A0"), Some(420)),
    ];
    let f = figures(&plan, &records, Some(100));
    assert_eq!(f.waves[0].name, "canary");
    assert_eq!((f.waves[0].succeeded, f.waves[0].rolled_back), (1, 1));
    assert_eq!(f.total.failed, 2);
    assert_eq!(f.total.success_rate, Some(50.0));
    assert_eq!(f.total.failure_reasons["health_check_failed"], 1);
    assert_eq!(f.time_to[0].seconds, Some(300), "2 of 4 succeeded at t=400");
    assert_eq!(f.time_to[3].seconds, None, "never all four");
    let csv = to_csv(&f);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("wave,devices,succeeded"));
    assert!(lines[1].starts_with("canary,2,1,1,1,0,"));
    // A device-chosen reason cannot become a spreadsheet formula.
    assert!(lines[2].contains("'=cmd"), "{}", lines[2]);
    assert!(lines[3].starts_with("total,4,2,2,"));
}

#[test]
fn a_final_result_is_not_undone_by_a_late_progress_report() {
    let t = UpdateType::Forced;
    assert_eq!(
        Outcome::from_report("installed", t),
        Some(Outcome::Succeeded)
    );
    assert_eq!(
        Outcome::from_report("downloaded", t),
        Some(Outcome::InProgress)
    );
    assert_eq!(
        Outcome::from_report("downloaded", UpdateType::DownloadOnly),
        Some(Outcome::Succeeded)
    );
    assert_eq!(Outcome::from_report("bogus", t), None);
    assert!(!Outcome::Succeeded.accepts(Outcome::InProgress));
    assert!(Outcome::Succeeded.accepts(Outcome::RolledBack));
    assert!(Outcome::Assigned.accepts(Outcome::InProgress));
}

#[test]
fn the_last_wave_completes_only_when_all_its_devices_reported() {
    let spec =
        spec(json!({"gate": {"min_results": 2, "max_failure_pct": 10, "min_success_pct": 90}}));
    let plan = Plan::new(&spec.phases, &spec.gate, 20).unwrap();
    let mut state = started(&spec, &plan);
    state.wave = plan.waves() - 1;
    let mut tally = Tally {
        devices: 10,
        succeeded: 9,
        ..Tally::default()
    };
    assert!(
        matches!(decide(&spec, &plan, &state, &tally, 9_000), Decision::Wait(w) if w.contains("1 of its 10")),
    );
    tally.succeeded = 10;
    assert_eq!(
        decide(&spec, &plan, &state, &tally, 9_000),
        Decision::Complete
    );
}

#[test]
fn allowed_actions_are_exactly_those_act_accepts() {
    use Action::*;
    let with = |status: Status, rolled_back: bool| CampaignState {
        status,
        rolled_back_at: rolled_back.then_some(5),
        ..CampaignState::draft()
    };
    let table = [
        (with(Status::Draft, false), vec![Start, Abort]),
        (with(Status::Running, false), vec![Pause, Abort]),
        (
            with(Status::AwaitingApproval, false),
            vec![Pause, Approve, Abort],
        ),
        (with(Status::Paused, false), vec![Resume, Approve, Abort]),
        // After a fleet rollback, approving is refused: only resume or abort remain.
        (with(Status::Paused, true), vec![Resume, Abort]),
        (with(Status::Aborted, false), vec![]),
        (with(Status::Completed, false), vec![]),
    ];
    for (state, expected) in table {
        assert_eq!(allowed_actions(&state), expected, "{:?}", state.status);
    }
}
