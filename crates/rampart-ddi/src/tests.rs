use serde_json::{Map, Value, json};

use crate::action::cache_buster;
use crate::config_data::{ConfigData, MAX_ATTRIBUTES};
use crate::wire::*;
use crate::*;

#[test]
fn polling_sleep_is_hh_mm_ss_below_a_day() {
    assert_eq!(polling_sleep(300), "00:05:00");
    assert_eq!(polling_sleep(3661), "01:01:01");
    assert_eq!(polling_sleep(0), "00:00:01");
    // A day or more would need ISO-8601, which SWUpdate cannot parse.
    assert_eq!(polling_sleep(86_400), "23:59:59");
    assert_eq!(polling_sleep(u64::MAX), "23:59:59");
}

#[test]
fn poll_answer_leaves_out_empty_links() {
    let v = serde_json::to_value(PollAnswer::new(30, Links::new())).unwrap();
    assert_eq!(v, json!({"config": {"polling": {"sleep": "00:00:30"}}}));
    let mut links = Links::new();
    links.insert(
        "deploymentBase".into(),
        Link::new("https://h/T/controller/v1/d/deploymentBase/3?c=1"),
    );
    let v = serde_json::to_value(PollAnswer::new(30, links)).unwrap();
    assert_eq!(
        v["_links"]["deploymentBase"]["href"],
        "https://h/T/controller/v1/d/deploymentBase/3?c=1"
    );
}

#[test]
fn action_types_and_windows_become_hawkbits_modes() {
    use ActionType::{DownloadOnly, Soft, TimeForced};
    use WindowState::*;
    use wire::Mode::{Attempt, Skip};
    const FORCED: wire::Mode = wire::Mode::Forced;
    const FORCED_TYPE: ActionType = ActionType::Forced;
    let at = |ty, w, now| {
        let m = deployment_modes(ty, w, now);
        (m.download, m.update, m.window)
    };
    assert_eq!(at(FORCED_TYPE, NoWindow, 0), (FORCED, FORCED, None));
    assert_eq!(at(Soft, NoWindow, 0), (Attempt, Attempt, None));
    assert_eq!(at(DownloadOnly, NoWindow, 0), (FORCED, Skip, None));
    let tf = TimeForced { forced_at: 100 };
    assert_eq!(at(tf, NoWindow, 99), (Attempt, Attempt, None));
    assert_eq!(at(tf, NoWindow, 100), (FORCED, FORCED, None));
    assert_eq!(
        at(FORCED_TYPE, Open, 0),
        (FORCED, FORCED, Some(Window::Available))
    );
    assert_eq!(
        at(FORCED_TYPE, Closed, 0),
        (FORCED, Skip, Some(Window::Unavailable))
    );
    assert_eq!(
        at(Soft, Closed, 0),
        (Attempt, Skip, Some(Window::Unavailable))
    );
    // hawkBit never sends download: skip.
    for ty in [FORCED_TYPE, Soft, DownloadOnly, tf] {
        for w in [NoWindow, Open, Closed] {
            assert_ne!(deployment_modes(ty, w, 0).download, Skip);
        }
    }
}

#[test]
fn the_cache_buster_changes_when_the_document_does() {
    let tf = ActionType::TimeForced { forced_at: 100 };
    let before = cache_buster(7, deployment_modes(tf, WindowState::NoWindow, 99));
    let after = cache_buster(7, deployment_modes(tf, WindowState::NoWindow, 100));
    assert_ne!(before, after);
    let open = cache_buster(
        7,
        deployment_modes(ActionType::Forced, WindowState::Open, 0),
    );
    let closed = cache_buster(
        7,
        deployment_modes(ActionType::Forced, WindowState::Closed, 0),
    );
    assert_ne!(open, closed);
    assert_ne!(
        cache_buster(
            7,
            deployment_modes(ActionType::Forced, WindowState::NoWindow, 0)
        ),
        cache_buster(
            8,
            deployment_modes(ActionType::Forced, WindowState::NoWindow, 0)
        )
    );
}

#[test]
fn deployment_feedback_follows_hawkbit() {
    use ActionState::{Canceled, Canceling, Downloaded, Error, Open};
    use Execution as E;
    use wire::Finished as F;
    const FINISHED: ActionState = ActionState::Finished;
    let fb = |state, ty, e, f| deployment_feedback(state, ty, e, f).map(|x| (x.state, x.report));
    let forced = ActionType::Forced;
    assert_eq!(
        fb(Open, forced, E::Closed, F::Success),
        Ok((FINISHED, Some("installed")))
    );
    assert_eq!(
        fb(Open, forced, E::Closed, F::None),
        Ok((FINISHED, Some("installed")))
    );
    assert_eq!(
        fb(Open, forced, E::Closed, F::Failure),
        Ok((Error, Some("failed")))
    );
    assert_eq!(
        fb(Open, forced, E::Proceeding, F::None),
        Ok((Open, Some("installing")))
    );
    assert_eq!(
        fb(Open, forced, E::Download, F::None),
        Ok((Open, Some("downloading")))
    );
    assert_eq!(
        fb(Open, forced, E::Downloaded, F::Success),
        Ok((Open, Some("downloaded")))
    );
    // canceled and rejected only record a message.
    assert_eq!(fb(Open, forced, E::Canceled, F::None), Ok((Open, None)));
    assert_eq!(fb(Open, forced, E::Rejected, F::None), Ok((Open, None)));
    // A device may finish while its action is being cancelled.
    assert_eq!(
        fb(Canceling, forced, E::Closed, F::Success),
        Ok((FINISHED, Some("installed")))
    );
    // Closed actions: 410.
    for closed in [FINISHED, Error, Canceled, Downloaded] {
        assert_eq!(
            fb(closed, forced, E::Proceeding, F::None),
            Err(FeedbackError::Closed)
        );
    }
    // Download-only: `downloaded` closes it; a `closed` without download is not a success.
    let dl = ActionType::DownloadOnly;
    assert_eq!(
        fb(Open, dl, E::Downloaded, F::Success),
        Ok((Downloaded, Some("downloaded")))
    );
    assert_eq!(
        fb(Open, dl, E::Closed, F::Success),
        Ok((Canceled, Some("cancelled")))
    );
    assert_eq!(
        fb(Open, dl, E::Closed, F::Failure),
        Ok((Error, Some("failed")))
    );
}

#[test]
fn cancellation_is_confirmed_refused_or_noted() {
    use ActionState::{Canceled, Canceling, Downloaded, Open};
    use Execution as E;
    use wire::Finished as F;
    let cf = |s, e, f| cancel_feedback(s, e, f).map(|x| (x.state, x.report_cancelled));
    assert_eq!(cf(Canceling, E::Closed, F::Success), Ok((Canceled, true)));
    assert_eq!(cf(Canceling, E::Closed, F::None), Ok((Canceled, true)));
    assert_eq!(cf(Canceling, E::Closed, F::Failure), Ok((Open, false)));
    assert_eq!(cf(Canceling, E::Rejected, F::Success), Ok((Open, false)));
    assert_eq!(
        cf(Canceling, E::Proceeding, F::None),
        Ok((Canceling, false))
    );
    assert_eq!(cf(Canceled, E::Closed, F::Success), Ok((Canceled, false)));
    for s in [Open, ActionState::Finished, ActionState::Error, Downloaded] {
        assert_eq!(
            cf(s, E::Closed, F::Success),
            Err(FeedbackError::NotCanceling)
        );
    }
}

#[test]
fn feedback_bodies_from_real_clients_parse() {
    // SWUpdate: numeric id, legacy time, progress with cnt > of.
    let swupdate: Feedback = serde_json::from_value(json!({
        "id": 17, "time": "20240611T153012",
        "status": {"result": {"progress": {"cnt": 42, "of": 0}, "finished": "none"},
                   "execution": "proceeding", "details": ["Installing Update Chunk Artifacts."]}
    }))
    .unwrap();
    assert_eq!(swupdate.status.execution, Execution::Proceeding);
    assert_eq!(swupdate.status.result.finished, Finished::None);
    // rauc-hawkbit-updater: string id, no details.
    let rauc: Feedback = serde_json::from_value(json!({
        "id": "17", "time": "20240611T133012",
        "status": {"result": {"finished": "success"}, "execution": "closed"}
    }))
    .unwrap();
    assert_eq!(rauc.messages(), Ok(vec![]));
    // Missing fields and unknown values are refused.
    for bad in [
        json!({"status": {"execution": "closed"}}),
        json!({"status": {"result": {"finished": "success"}}}),
        json!({"status": {"execution": "exploded", "result": {"finished": "success"}}}),
        json!({"status": {"execution": "closed", "result": {"finished": "maybe"}}}),
        json!({}),
    ] {
        assert!(
            serde_json::from_value::<Feedback>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn feedback_messages_are_split_and_bounded() {
    let long = "x".repeat(1100);
    let f: Feedback = serde_json::from_value(json!({
        "status": {"execution": "closed", "result": {"finished": "failure"},
                   "code": 3, "details": [long, ""]}
    }))
    .unwrap();
    let m = f.messages().unwrap();
    assert_eq!(m.len(), 4);
    assert_eq!((m[0].len(), m[1].len(), m[2].len()), (512, 512, 76));
    assert_eq!(m[3], "Device reported status code: 3");
    let many: Vec<String> = (0..51).map(|i| i.to_string()).collect();
    let f: Feedback = serde_json::from_value(json!({
        "status": {"execution": "proceeding", "result": {"finished": "none"}, "details": many}
    }))
    .unwrap();
    assert_eq!(f.messages(), Err(51));
}

#[test]
fn authorization_headers() {
    assert_eq!(
        parse_authorization("TargetToken abc123"),
        Some(Credential::Target("abc123"))
    );
    assert_eq!(
        parse_authorization("GatewayToken g"),
        Some(Credential::Gateway("g"))
    );
    for bad in [
        "targettoken abc",
        "TargetToken",
        "TargetToken ",
        "TargetToken a b",
        "Bearer abc",
        "Basic dXNlcjpwYXNz",
        "",
    ] {
        assert_eq!(parse_authorization(bad), None, "{bad:?}");
    }
    let long = format!("TargetToken {}", "a".repeat(129));
    assert_eq!(parse_authorization(&long), None);
}

fn attrs(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn request(v: Value) -> ConfigData {
    serde_json::from_value(v).unwrap()
}

#[test]
fn config_data_merges_replaces_and_removes() {
    let current = attrs(json!({"a": "1", "b": "2"}));
    let merged = apply_config_data(
        &current,
        &request(json!({"data": {"b": "3", "c": "4", "a": null}})),
    )
    .unwrap();
    assert_eq!(merged, attrs(json!({"b": "3", "c": "4"})));
    // SWUpdate's body: replace, with extra fields.
    let replaced = apply_config_data(
        &current,
        &request(
            json!({"id": "", "time": "20240611T153012", "mode": "replace",
            "status": {"result": {"finished": "success"}, "execution": "closed", "details": [""]},
            "data": {"hw": "rev-b"}}),
        ),
    )
    .unwrap();
    assert_eq!(replaced, attrs(json!({"hw": "rev-b"})));
    let removed = apply_config_data(
        &current,
        &request(json!({"mode": "remove", "data": {"a": "ignored"}})),
    )
    .unwrap();
    assert_eq!(removed, attrs(json!({"b": "2"})));
}

#[test]
fn config_data_refuses_bad_entries_whole() {
    let current = attrs(json!({"a": "1"}));
    let refused = |v: Value| apply_config_data(&current, &request(v)).unwrap_err();
    assert_eq!(refused(json!({"data": {}})), ConfigDataError::Empty);
    assert!(matches!(
        refused(json!({"data": {"ok": "1", "bad": "x".repeat(129)}})),
        ConfigDataError::Invalid { .. }
    ));
    assert!(matches!(
        refused(json!({"data": {"k`": "1"}})),
        ConfigDataError::Invalid { .. }
    ));
    assert!(matches!(
        refused(json!({"data": {"n": 5}})),
        ConfigDataError::Invalid { .. }
    ));
    assert!(
        serde_json::from_value::<ConfigData>(json!({"mode": "append", "data": {"a": "1"}}))
            .is_err()
    );
    let full: Map<String, Value> = (0..MAX_ATTRIBUTES)
        .map(|i| (format!("k{i}"), json!("v")))
        .collect();
    assert_eq!(
        apply_config_data(&full, &request(json!({"data": {"one-more": "v"}}))).unwrap_err(),
        ConfigDataError::TooMany(MAX_ATTRIBUTES + 1)
    );
    // At the limit, changing values is still allowed.
    assert!(apply_config_data(&full, &request(json!({"data": {"k1": "w"}}))).is_ok());
}

#[test]
fn md5sum_files_have_no_final_newline() {
    assert_eq!(
        md5sum_line("d41d8cd98f00b204e9800998ecf8427e", "fw.swu"),
        "d41d8cd98f00b204e9800998ecf8427e  fw.swu"
    );
}

#[test]
fn swupdates_unescaped_newlines_are_tolerated() {
    let raw = b"{ \"id\": 7, \"status\": { \"result\": { \"finished\": \"failure\" }, \"execution\": \"closed\",\n \"details\" : [ \"No artifact download URL reported by server.\n\" ] } }";
    assert!(serde_json::from_slice::<Feedback>(raw).is_err());
    let f: Feedback = wire::parse_lenient(raw).unwrap();
    assert_eq!(f.status.execution, Execution::Closed);
    assert_eq!(
        f.status.details,
        ["No artifact download URL reported by server. "]
    );
    // Still not a parser of anything: broken JSON stays broken.
    assert!(wire::parse_lenient::<Feedback>(b"{\"status\": ").is_err());
}
