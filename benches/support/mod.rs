//! What the benchmarks share: observed instances spread over a plan's fleets.

use chrono::{TimeZone, Utc};
use gpufleet::catalog::Catalog;
use gpufleet::model::{Cloud, Instance, Scope};

/// `n` running instances, round-robin over the plan's fleets and, within a
/// fleet, over the offerings it may use, each in the scope its cloud lists.
pub fn observed(n: usize, plan: &gpufleet::plan::Plan, catalog: &Catalog) -> Vec<Instance> {
    let fleets: Vec<&gpufleet::plan::Fleet> = plan.fleets.values().collect();
    let offerings: Vec<_> =
        fleets.iter().map(|f| gpufleet::plan::offerings::allowed_offerings(f, &plan.providers, catalog)).collect();
    (0..n)
        .map(|i| {
            let f = i % fleets.len();
            let o = &offerings[f][(i / fleets.len()) % offerings[f].len()];
            let scope = match o.cloud {
                Cloud::Aws => Some(Scope::AwsRegion { region: o.region.clone(), profile: None }),
                Cloud::Gcp | Cloud::Azure => None,
            };
            Instance {
                id: format!("i-{i:017x}"),
                cloud: o.cloud,
                region: o.region.clone(),
                zone: o.zone.clone().or_else(|| (o.cloud == Cloud::Aws).then(|| format!("{}a", o.region))),
                instance_type: o.instance_type.clone(),
                fleet: fleets[f].name.clone(),
                run: "bench".into(),
                launched_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(i as i64),
                scope,
            }
        })
        .collect()
}
