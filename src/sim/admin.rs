//! The simulator's own API under `/_sim/` (JSON): look at the world, count
//! calls, read and move the clock, change capacity. Tests and demos use it to
//! script "capacity comes back after 20 minutes" without touching the clouds'
//! protocols.
//!
//! It also holds one testing aid, the pause point ([`PauseGate`]), for
//! crash-safety tests that must stop a client at an exact call, not at a
//! moment of the wall clock:
//!
//! - `POST /_sim/latency {"latency": "20ms"}` sets the wire latency.
//! - `POST /_sim/pause {"at_call": N, "when": "before" | "after"}` arms a
//!   pause at the N-th cloud API request (EC2, Compute Engine or ARM; admin
//!   calls do not count) counted from this call. `before`: that request is
//!   held before it touches the world. `after`: it is applied (and the world
//!   saved) and held before its response goes out. With `"calls": K` the K
//!   requests from the N-th on are all held (a client that retries a call
//!   that never answers meets a cloud that keeps not answering). One pause
//!   at a time: 409 while a request is held.
//! - `GET /_sim/paused` (long poll) answers as soon as a request is held:
//!   `{"paused": true, "call": N, "when": "...", "action": "..."}`; it answers
//!   `{"paused": false}` when nothing is armed, or when `resume` disarms the
//!   pause before any request reached it.
//! - `POST /_sim/resume` disarms the pause and releases the held requests;
//!   it answers `{"released": {...} | null, "calls_counted": K}`, K being the
//!   cloud requests counted while the pause was armed. A request held
//!   `before` is dropped, never applied: it gets a 503, as if the network
//!   lost it on the way (a client still alive retries it with its idempotency
//!   token). A request held `after` gets its response, which goes nowhere if
//!   its client died meanwhile.
//!
//! A held request holds no lock on the world: every other request, admin or
//! cloud, is served meanwhile.

use super::world::{Instance, Pool, ScheduledCapacity, World};
use crate::model::Cloud;
use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

/// A JSON response, and whether the world changed (so the server persists it).
#[derive(Debug, Clone, PartialEq)]
pub struct AdminResponse {
    pub status: StatusCode,
    pub body: Value,
    pub mutated: bool,
}

impl AdminResponse {
    fn ok(body: Value, mutated: bool) -> AdminResponse {
        AdminResponse { status: StatusCode::OK, body, mutated }
    }

    fn bad_request(message: impl Into<String>) -> AdminResponse {
        AdminResponse { status: StatusCode::BAD_REQUEST, body: json!({ "error": message.into() }), mutated: false }
    }
}

/// The world's time as RFC 3339 with a `Z`, the form every endpoint uses.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[derive(Serialize)]
struct WorldDump<'a> {
    now: String,
    start: String,
    scenario_hash: &'a str,
    /// Available capacity per zone and type; `null` means unlimited.
    offerings: &'a [Pool],
    scheduled: &'a [ScheduledCapacity],
    instances: Vec<&'a Instance>,
    /// Compute Engine VMs (apart: their names and ids are GCE's).
    gce_instances: Vec<&'a super::gce_world::GceInstance>,
    /// Azure VMs of every scale set, with the tags they were created with.
    azure_vms: Vec<&'a super::vmss::Vm>,
}

/// `GET /_sim/world`
pub fn world(world: &World) -> AdminResponse {
    let dump = WorldDump {
        now: format_time(world.now),
        start: format_time(world.start),
        scenario_hash: &world.scenario_hash,
        offerings: world.pools(),
        scheduled: world.scheduled(),
        instances: world.instances().collect(),
        gce_instances: world.gce.instances().collect(),
        azure_vms: super::vmss::all_vms(world).collect(),
    };
    AdminResponse::ok(serde_json::to_value(dump).unwrap_or(Value::Null), false)
}

/// `GET /_sim/counters`: calls by cloud, then action.
pub fn counters(world: &World) -> AdminResponse {
    AdminResponse::ok(serde_json::to_value(world.counters()).unwrap_or(Value::Null), false)
}

/// `GET /_sim/time`
pub fn time(world: &World) -> AdminResponse {
    AdminResponse::ok(json!({ "now": format_time(world.now) }), false)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceRequest {
    by: String,
}

/// `POST /_sim/advance` with `{"by": "20m"}`.
pub fn advance(world: &mut World, body: &[u8]) -> AdminResponse {
    let request: AdvanceRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => return AdminResponse::bad_request(format!("expected {{\"by\": \"20m\"}}: {e}")),
    };
    let by = match humantime::parse_duration(&request.by) {
        Ok(by) => by,
        Err(e) => return AdminResponse::bad_request(format!("\"{}\" is not a duration like \"20m\": {e}", request.by)),
    };
    match world.advance(by) {
        Ok(now) => AdminResponse::ok(json!({ "now": format_time(now) }), true),
        Err(e) => AdminResponse::bad_request(e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyRequest {
    latency: String,
}

/// `POST /_sim/latency` with `{"latency": "20ms"}`: the real time every
/// cloud response is held back from now on (benchmarks seed a world at full
/// speed, then measure with round trips).
pub fn set_latency(world: &mut World, body: &[u8]) -> AdminResponse {
    let request: LatencyRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => return AdminResponse::bad_request(format!("expected {{\"latency\": \"20ms\"}}: {e}")),
    };
    match humantime::parse_duration(&request.latency) {
        Ok(latency) if latency <= super::scenario::MAX_WIRE_LATENCY => {
            world.wire_latency = latency;
            AdminResponse::ok(json!({ "latency": request.latency }), true)
        }
        Ok(_) => AdminResponse::bad_request(format!(
            "at most {}",
            humantime::format_duration(super::scenario::MAX_WIRE_LATENCY)
        )),
        Err(e) => AdminResponse::bad_request(format!("\"{}\" is not a duration like \"20ms\": {e}", request.latency)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapacityRequest {
    cloud: Cloud,
    region: String,
    zone: Option<String>,
    instance_type: String,
    /// `null` or absent means unlimited.
    capacity: Option<u32>,
}

/// `POST /_sim/capacity` with `{cloud, region, zone?, instance_type, capacity}`.
pub fn set_capacity(world: &mut World, body: &[u8]) -> AdminResponse {
    let request: CapacityRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => {
            return AdminResponse::bad_request(format!(
                "expected {{\"cloud\", \"region\", \"zone\"?, \"instance_type\", \"capacity\"}}: {e}"
            ));
        }
    };
    match world.set_capacity(
        request.cloud,
        &request.region,
        request.zone.as_deref(),
        &request.instance_type,
        request.capacity,
    ) {
        Ok(changed) => AdminResponse::ok(json!({ "pools_changed": changed }), true),
        Err(e) => AdminResponse::bad_request(e.to_string()),
    }
}

/// When an armed pause holds its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseWhen {
    /// Before the request is applied to the world.
    Before,
    /// After it is applied and the world saved, before the response is sent.
    After,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseRequest {
    /// 1 is the next cloud request.
    at_call: u64,
    when: PauseWhen,
    /// How many requests, from `at_call` on, are held.
    #[serde(default = "one_call")]
    calls: u64,
}

fn one_call() -> u64 {
    1
}

/// The request a pause holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldCall {
    /// Its rank among the cloud requests counted since the pause was armed.
    pub call: u64,
    pub when: PauseWhen,
    /// What it asks for, e.g. `ec2 RunInstances` or `arm PATCH /subscriptions/...`.
    pub action: String,
}

#[derive(Debug, Clone, Default)]
struct PauseState {
    armed: Option<PauseRequest>,
    /// Cloud requests seen since the pause was armed.
    calls_since_armed: u64,
    held: Option<HeldCall>,
    /// Bumped by every resume: a hold taken in an earlier epoch is over.
    epoch: u64,
}

/// The pause point of the admin API (see the module header): counts cloud
/// requests, holds the armed one, and wakes long polls and held requests.
#[derive(Debug)]
pub struct PauseGate {
    state: watch::Sender<PauseState>,
}

impl Default for PauseGate {
    fn default() -> PauseGate {
        PauseGate { state: watch::Sender::new(PauseState::default()) }
    }
}

/// A cloud request's pass through the gate: held, or not.
#[derive(Debug)]
pub struct CallTicket {
    hold: Option<Hold>,
}

#[derive(Debug)]
struct Hold {
    when: PauseWhen,
    epoch: u64,
    resumed: watch::Receiver<PauseState>,
}

impl Hold {
    async fn until_resumed(&mut self) {
        let epoch = self.epoch;
        // An error means the gate is gone (server shutting down): stop holding.
        let _ = self.resumed.wait_for(|state| state.epoch != epoch).await;
    }
}

impl CallTicket {
    /// For a request held `before`: waits for resume and returns true, the
    /// request is then dropped unapplied. False at once for any other request.
    pub async fn dropped_before_applying(&mut self) -> bool {
        match &mut self.hold {
            Some(hold) if hold.when == PauseWhen::Before => {
                hold.until_resumed().await;
                true
            }
            _ => false,
        }
    }

    /// For a request held `after`: waits for resume. At once for any other request.
    pub async fn held_before_responding(&mut self) {
        if let Some(hold) = self.hold.as_mut().filter(|hold| hold.when == PauseWhen::After) {
            hold.until_resumed().await;
        }
    }
}

impl PauseGate {
    /// Counts one cloud request; the ticket says whether it is the one to hold.
    pub fn check_in(&self, action: impl FnOnce() -> String) -> CallTicket {
        let mut hold = None;
        self.state.send_if_modified(|state| {
            let Some(armed) = state.armed else { return false };
            state.calls_since_armed += 1;
            if state.calls_since_armed < armed.at_call {
                return false;
            }
            if state.calls_since_armed - armed.at_call + 1 >= armed.calls {
                state.armed = None;
            }
            // The first request held is the one `paused` reports.
            if state.held.is_none() {
                state.held = Some(HeldCall { call: state.calls_since_armed, when: armed.when, action: action() });
            }
            hold = Some(Hold { when: armed.when, epoch: state.epoch, resumed: self.state.subscribe() });
            true
        });
        CallTicket { hold }
    }

    /// `POST /_sim/pause` with `{"at_call": N, "when": "before" | "after"}`.
    pub fn arm(&self, body: &[u8]) -> AdminResponse {
        let request: PauseRequest = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(e) => {
                return AdminResponse::bad_request(format!(
                    "expected {{\"at_call\": N, \"when\": \"before\" | \"after\"}}: {e}"
                ));
            }
        };
        if request.at_call == 0 {
            return AdminResponse::bad_request("at_call counts from 1 (the next cloud request)");
        }
        if request.calls == 0 {
            return AdminResponse::bad_request("calls counts the requests held: at least 1");
        }
        let mut refused = None;
        self.state.send_modify(|state| match &state.held {
            Some(held) => refused = Some(held.clone()),
            None => {
                state.armed = Some(request);
                state.calls_since_armed = 0;
            }
        });
        match refused {
            Some(held) => AdminResponse {
                status: StatusCode::CONFLICT,
                body: json!({ "error": "a request is held; POST /_sim/resume first", "held": held }),
                mutated: false,
            },
            None => AdminResponse::ok(
                json!({ "armed": { "at_call": request.at_call, "when": request.when, "calls": request.calls } }),
                false,
            ),
        }
    }

    /// `GET /_sim/paused`: waits until a request is held, or until the pause
    /// is disarmed; answers at once when nothing is armed.
    pub async fn paused(&self) -> AdminResponse {
        let mut changes = self.state.subscribe();
        let epoch = changes.borrow().epoch;
        let outcome = changes
            .wait_for(|state| state.held.is_some() || state.armed.is_none() || state.epoch != epoch)
            .await
            .ok()
            .and_then(|state| state.held.clone());
        let body = match outcome {
            Some(held) => json!({ "paused": true, "call": held.call, "when": held.when, "action": held.action }),
            None => json!({ "paused": false }),
        };
        AdminResponse::ok(body, false)
    }

    /// `POST /_sim/resume`: disarms the pause and releases the held request.
    /// Says which request it released, if any, and how many cloud requests
    /// were counted while the pause was armed (a pause armed beyond a
    /// client's last call thus measures how many calls it made).
    pub fn resume(&self) -> AdminResponse {
        let (mut released, mut calls_counted) = (None, 0);
        self.state.send_modify(|state| {
            released = state.held.take();
            calls_counted = state.calls_since_armed;
            state.armed = None;
            state.calls_since_armed = 0;
            state.epoch += 1;
        });
        AdminResponse::ok(json!({ "released": released, "calls_counted": calls_counted }), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn sim_admin_advances_the_clock_and_sets_capacity() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        let advanced = advance(&mut world, br#"{"by": "20m"}"#);
        assert_eq!(advanced.body, json!({ "now": "2026-01-01T00:20:00Z" }));
        assert_eq!(time(&world).body, json!({ "now": "2026-01-01T00:20:00Z" }));

        let set = set_capacity(
            &mut world,
            br#"{"cloud": "aws", "region": "us-east-1", "zone": "us-east-1a", "instance_type": "p5.48xlarge", "capacity": 4}"#,
        );
        assert_eq!(set.body, json!({ "pools_changed": 1 }));
        // p5.48xlarge in us-east-1, as `GET /_sim/world` shows it: (zone, available).
        let pools = |world: &World| -> Vec<(String, Value)> {
            self::world(world).body["offerings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["region"] == "us-east-1" && p["instance_type"] == "p5.48xlarge")
                .map(|p| (p["zone"].as_str().unwrap().to_string(), p["available"].clone()))
                .collect()
        };
        let zone = |name: &str, available: Value| (name.to_string(), available);
        assert_eq!(
            pools(&world),
            vec![
                zone("us-east-1a", json!(4)),
                zone("us-east-1b", Value::Null),
                zone("us-east-1c", Value::Null),
                zone("us-east-1d", Value::Null),
                zone("us-east-1f", Value::Null),
            ]
        );

        // Without a zone: every zone of the region that offers the type.
        let set = set_capacity(
            &mut world,
            br#"{"cloud": "aws", "region": "us-east-1", "instance_type": "p5.48xlarge", "capacity": 2}"#,
        );
        assert_eq!(set.body, json!({ "pools_changed": 5 }));
        assert!(pools(&world).iter().all(|(_, available)| *available == json!(2)), "{:?}", pools(&world));
    }

    #[test]
    fn sim_admin_sets_the_wire_latency() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        let set = set_latency(&mut world, br#"{"latency": "20ms"}"#);
        assert_eq!(set.status, StatusCode::OK);
        assert_eq!(world.wire_latency, std::time::Duration::from_millis(20));
    }

    #[test]
    fn sim_admin_rejects_bad_requests_with_json_errors() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        for response in [
            advance(&mut world, b"{"),
            advance(&mut world, br#"{"by": "later"}"#),
            set_latency(&mut world, br#"{"latency": "soon"}"#),
            set_latency(&mut world, br#"{"latency": "1h"}"#),
            set_capacity(&mut world, br#"{"cloud": "oracle", "region": "r", "instance_type": "t", "capacity": 1}"#),
            set_capacity(
                &mut world,
                br#"{"cloud": "aws", "region": "us-east-1", "zone": "us-east-1z", "instance_type": "t"}"#,
            ),
        ] {
            assert_eq!(response.status, StatusCode::BAD_REQUEST);
            assert!(response.body["error"].is_string());
            assert!(!response.mutated);
        }
        assert_eq!(world.now, world.start);
    }
    #[tokio::test]
    async fn sim_pause_holds_the_armed_call_after_applying_and_releases_it_on_resume() {
        let gate = PauseGate::default();
        assert_eq!(gate.paused().await.body, json!({ "paused": false }), "nothing armed: answers at once");
        gate.arm(br#"{"at_call": 1000, "when": "before"}"#);
        for _ in 0..3 {
            gate.check_in(|| "ec2 DescribeInstances".into());
        }
        assert_eq!(
            gate.resume().body,
            json!({ "released": null, "calls_counted": 3 }),
            "counts calls short of the pause"
        );
        assert_eq!(gate.arm(br#"{"at_call": 2, "when": "after"}"#).status, StatusCode::OK);
        let mut first = gate.check_in(|| "ec2 DescribeInstances".into());
        assert!(!first.dropped_before_applying().await);
        first.held_before_responding().await;
        let mut second = gate.check_in(|| "ec2 RunInstances".into());
        assert!(!second.dropped_before_applying().await, "held after applying, not before");
        let expected = json!({ "paused": true, "call": 2, "when": "after", "action": "ec2 RunInstances" });
        assert_eq!(gate.paused().await.body, expected);
        let conflict = gate.arm(br#"{"at_call": 1, "when": "before"}"#);
        assert_eq!(conflict.status, StatusCode::CONFLICT);
        assert_eq!(conflict.body["held"]["call"], json!(2));
        let mut third = gate.check_in(|| "ec2 TerminateInstances".into());
        third.held_before_responding().await;

        let held = tokio::spawn(async move { second.held_before_responding().await });
        assert_eq!(gate.resume().body["released"]["action"], json!("ec2 RunInstances"));
        held.await.unwrap();
        assert_eq!(gate.paused().await.body, json!({ "paused": false }));
    }

    #[tokio::test]
    async fn sim_pause_before_drops_the_call_and_resume_wakes_a_waiting_poll() {
        let gate = std::sync::Arc::new(PauseGate::default());
        gate.arm(br#"{"at_call": 1, "when": "before"}"#);
        let mut ticket = gate.check_in(|| "gce POST /compute/v1/projects/p/zones/z/instances/bulkInsert".into());
        let dropped = tokio::spawn(async move { ticket.dropped_before_applying().await });
        assert_eq!(gate.paused().await.body["when"], json!("before"));
        gate.resume();
        assert!(dropped.await.unwrap(), "a call held before applying is dropped on resume");

        gate.arm(br#"{"at_call": 5, "when": "after"}"#);
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.paused().await }
        });
        // The poll waits while the pause is armed and unreached; resume answers it.
        tokio::task::yield_now().await;
        gate.resume();
        assert_eq!(waiting.await.unwrap().body, json!({ "paused": false }));
        let mut after_resume = gate.check_in(|| "arm GET /subscriptions/s".into());
        assert!(!after_resume.dropped_before_applying().await, "a disarmed gate holds nothing");
    }

    #[test]
    fn sim_pause_rejects_bad_requests() {
        let gate = PauseGate::default();
        for body in [&br#"{"at_call": 0, "when": "before"}"#[..], br#"{"at_call": 1, "when": "during"}"#, b"{"] {
            let response = gate.arm(body);
            assert_eq!(response.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(body));
            assert!(response.body["error"].is_string());
        }
    }
}
