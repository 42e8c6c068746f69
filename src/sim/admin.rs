//! The simulator's own API under `/_sim/` (JSON): look at the world, count
//! calls, read and move the clock, change capacity. Tests and demos use it to
//! script "capacity comes back after 20 minutes" without touching the clouds'
//! protocols.

use super::world::{Instance, Pool, ScheduledCapacity, World};
use crate::catalog::Cloud;
use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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
    fn sim_admin_rejects_bad_requests_with_json_errors() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        for response in [
            advance(&mut world, b"{"),
            advance(&mut world, br#"{"by": "later"}"#),
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
}
