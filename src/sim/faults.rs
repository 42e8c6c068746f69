//! Fault injection: transient errors and throttling that a scenario asks
//! for, so that gpufleet's retries are exercised against the very error
//! shapes the real clouds send.
//!
//! Deterministic by construction, as the rest of the world: faults come from
//! a seeded PRNG whose state is part of the world (and of its file), and rate
//! limits count calls instead of reading a clock. The same scenario and the
//! same sequence of requests always meet the same faults.
//!
//! The throttling model is a token bucket refilled by calls rather than by
//! time (simulated time does not move during an apply, so a time-refilled
//! bucket would never refill): a bucket starts full with `bucket` tokens;
//! every call in its scope first counts towards the refill, and every
//! `refill_every`-th call puts one token back (up to `bucket`); then the call
//! takes a token, or is throttled if none is left. A burst therefore gets
//! `bucket` calls through, after which one call in `refill_every` passes,
//! and a client that retries is never locked out. A bucket's scope is one
//! cloud (and one region on EC2, whose limits are per region), and one call
//! kind if `call` is given, else every call of that cloud.
//!
//! Rate limits are checked before the error roll; a call that is throttled
//! or fails never reaches the world, so nothing it asked for happens.
//!
//! One roll of the cloud's PRNG decides the rest of a call's fate, by bands
//! of the same uniform number: below the error rate a transient error, then
//! `reset_rate` a connection reset (the server drops the connection without
//! any response, and the call is not applied), then `slow_rate` a slow
//! response (applied, but the simulated clock jumps by `slow_by`). Every call,
//! refused or not, also takes `latency` of simulated time, so the simulated
//! time an apply takes becomes measurable without a wall clock.

use crate::model::Cloud;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Call kinds as the simulator counts them (`/_sim/counters`), by cloud; the
/// names that `per_call` and `rate_limit.call` accept.
pub const CALLS: &[(Cloud, &[&str])] = &[
    (
        Cloud::Aws,
        &[
            "RunInstances",
            "DescribeInstances",
            "TerminateInstances",
            "CreateTags",
            "DescribeInstanceTypeOfferings",
            "DescribeImages",
            "DescribeSubnets",
            "DescribeSecurityGroups",
            "DescribeKeyPairs",
            "GetServiceQuota",
            "ListServiceQuotas",
        ],
    ),
    (
        Cloud::Gcp,
        &[
            "instances.list",
            "instances.aggregatedList",
            "instances.insert",
            "instances.bulkInsert",
            "instances.get",
            "instances.delete",
            "zoneOperations.get",
            "zoneOperations.wait",
            "regions.get",
            "projects.get",
            "machineTypes.get",
            "images.get",
            "images.getFromFamily",
            "networks.get",
            "subnetworks.get",
        ],
    ),
    (
        Cloud::Azure,
        &[
            "VirtualMachineScaleSets_List",
            "VirtualMachineScaleSets_Get",
            "VirtualMachineScaleSets_CreateOrUpdate",
            "VirtualMachineScaleSets_Update",
            "VirtualMachineScaleSets_Delete",
            "VirtualMachineScaleSets_DeleteInstances",
            "VirtualMachines_List",
            "VirtualMachines_Get",
            "Operations_Get",
            "Usage_List",
            "ResourceGroups_Get",
            "Subnets_Get",
            "UserAssignedIdentities_Get",
            "ResourceSkus_List",
            "VirtualMachineImages_List",
            "VirtualMachineImages_Get",
        ],
    ),
];

/// The cloud a call kind belongs to, if the simulator serves it.
pub fn cloud_of_call(call: &str) -> Option<Cloud> {
    CALLS.iter().find(|(_, calls)| calls.contains(&call)).map(|(cloud, _)| *cloud)
}

/// Injected transient errors: `[faults]` of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorFaults {
    pub seed: u64,
    /// Share of calls answered with a transient error, 0 to 1.
    pub error_rate: f64,
    /// Shares for some call kinds, in place of `error_rate`.
    pub per_call: BTreeMap<String, f64>,
    /// Share of calls whose connection is dropped unanswered and unapplied.
    #[serde(default)]
    pub reset_rate: f64,
    /// Reset shares for some call kinds, in place of `reset_rate`.
    #[serde(default)]
    pub reset_per_call: BTreeMap<String, f64>,
    /// Simulated time every call takes.
    #[serde(default)]
    pub latency: Duration,
    /// Latencies for some call kinds, in place of `latency`.
    #[serde(default)]
    pub latency_per_call: BTreeMap<String, Duration>,
    /// Share of calls that succeed but take `slow_by` more simulated time.
    #[serde(default)]
    pub slow_rate: f64,
    #[serde(default)]
    pub slow_by: Duration,
}

impl ErrorFaults {
    /// Only a seed: no fault of any kind until a share or latency is set.
    pub fn seeded(seed: u64) -> ErrorFaults {
        ErrorFaults {
            seed,
            error_rate: 0.0,
            per_call: BTreeMap::new(),
            reset_rate: 0.0,
            reset_per_call: BTreeMap::new(),
            latency: Duration::ZERO,
            latency_per_call: BTreeMap::new(),
            slow_rate: 0.0,
            slow_by: Duration::ZERO,
        }
    }
}

/// One `[[rate_limit]]` of a scenario (see the module header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    pub cloud: Cloud,
    /// One call kind, or every call of the cloud.
    pub call: Option<String>,
    /// Tokens when full, and at the start.
    pub bucket: u32,
    /// One token comes back every this many calls in the bucket's scope.
    pub refill_every: u32,
}

/// A bucket's running state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Bucket {
    tokens: u32,
    calls: u64,
}

/// What a call meets instead of being applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The cloud's "slow down" answer.
    Throttled,
    /// The cloud's transient server error; `variant` picks among the
    /// cloud's shapes (e.g. EC2 503 `Unavailable` or 500 `InternalError`).
    Transient { variant: u8 },
    /// The connection drops without any HTTP response.
    Reset,
    /// The caller's credentials are refused (`[credentials]` of the scenario).
    Credentials(CredentialTrouble),
}

/// What is wrong with a cloud's credentials, for scenarios that rehearse the
/// messages users see: every call to that cloud is refused with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialTrouble {
    /// Accepted once, no longer: an expired session or token (EC2
    /// `ExpiredToken`, Compute Engine 401, ARM `ExpiredAuthenticationToken`).
    Expired,
    /// Valid, but not allowed the call (EC2 `UnauthorizedOperation`,
    /// Compute Engine 403 `forbidden`, ARM `AuthorizationFailed`).
    Forbidden,
}

/// The fate of one call: a fault that refuses it, if any, and the simulated
/// time it takes (latency, plus `slow_by` for a slow response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub fault: Option<Fault>,
    pub delay: Duration,
}

/// The fault model of a world: configuration and running state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Faults {
    errors: Option<ErrorFaults>,
    rate_limits: Vec<RateLimit>,
    /// xorshift64* state per cloud, seeded from `errors.seed` and the
    /// cloud: one cloud's faults do not depend on how its calls interleave
    /// with another cloud's (gpufleet works on clouds concurrently).
    rngs: BTreeMap<Cloud, u64>,
    /// Bucket states by `cloud/region/call` scope.
    buckets: BTreeMap<String, Bucket>,
}

impl Faults {
    pub fn new(errors: Option<ErrorFaults>, rate_limits: Vec<RateLimit>) -> Faults {
        let seed = errors.as_ref().map_or(0, |e| e.seed);
        let rngs = [Cloud::Aws, Cloud::Gcp, Cloud::Azure]
            .into_iter()
            .enumerate()
            // splitmix64: close seeds diverge at once; xorshift needs a non-zero state.
            .map(|(index, cloud)| (cloud, splitmix64(seed ^ ((index as u64 + 1) << 56)).max(1)))
            .collect();
        Faults { errors, rate_limits, rngs, buckets: BTreeMap::new() }
    }

    /// Decides the fate of one call of `cloud` in `region` (EC2 only; empty
    /// elsewhere): a `fault` of `None` lets it through to the world.
    pub fn check(&mut self, cloud: Cloud, region: &str, call: &str) -> Verdict {
        let latency =
            self.errors.as_ref().map_or(Duration::ZERO, |e| e.latency_per_call.get(call).copied().unwrap_or(e.latency));
        let (fault, slow) = self.roll(cloud, region, call);
        let slow_by = self.errors.as_ref().filter(|_| slow).map_or(Duration::ZERO, |e| e.slow_by);
        Verdict { fault, delay: latency.saturating_add(slow_by) }
    }

    /// Rate limits, then the PRNG roll: the fault, and whether the call is slow.
    fn roll(&mut self, cloud: Cloud, region: &str, call: &str) -> (Option<Fault>, bool) {
        let mut throttled = false;
        for limit in &self.rate_limits {
            if limit.cloud != cloud || limit.call.as_deref().is_some_and(|c| c != call) {
                continue;
            }
            let scope = format!("{}/{}/{}", cloud.as_str(), region, limit.call.as_deref().unwrap_or("*"));
            let bucket = self.buckets.entry(scope).or_insert(Bucket { tokens: limit.bucket, calls: 0 });
            bucket.calls = bucket.calls.saturating_add(1);
            if bucket.calls.is_multiple_of(u64::from(limit.refill_every)) {
                bucket.tokens = bucket.tokens.saturating_add(1).min(limit.bucket);
            }
            // Every matching bucket counts the call; only a call that all of
            // them admit takes tokens, as a request refused at the first
            // limit spends nothing at the others. Refusal wins.
            throttled |= bucket.tokens == 0;
        }
        if throttled {
            return (Some(Fault::Throttled), false);
        }
        for limit in &self.rate_limits {
            if limit.cloud == cloud && limit.call.as_deref().is_none_or(|c| c == call) {
                let scope = format!("{}/{}/{}", cloud.as_str(), region, limit.call.as_deref().unwrap_or("*"));
                if let Some(bucket) = self.buckets.get_mut(&scope) {
                    bucket.tokens -= 1;
                }
            }
        }
        let (rate, reset_rate, slow_rate) = match &self.errors {
            Some(e) => (
                e.per_call.get(call).copied().unwrap_or(e.error_rate),
                e.reset_per_call.get(call).copied().unwrap_or(e.reset_rate),
                e.slow_rate,
            ),
            None => return (None, false),
        };
        let roll = self.next_u64(cloud);
        // The top 53 bits as a uniform float in [0, 1); the low bit picks the shape.
        let uniform = (roll >> 11) as f64 / (1u64 << 53) as f64;
        if uniform < rate {
            (Some(Fault::Transient { variant: (roll & 1) as u8 }), false)
        } else if uniform < rate + reset_rate {
            (Some(Fault::Reset), false)
        } else {
            (None, uniform < rate + reset_rate + slow_rate)
        }
    }

    fn next_u64(&mut self, cloud: Cloud) -> u64 {
        let state = self.rngs.entry(cloud).or_insert(1);
        let mut x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(seed: u64, rate: f64) -> Option<ErrorFaults> {
        Some(ErrorFaults { error_rate: rate, ..ErrorFaults::seeded(seed) })
    }

    fn run(faults: &mut Faults, cloud: Cloud, call: &str, n: usize) -> Vec<Option<Fault>> {
        (0..n).map(|_| faults.check(cloud, "", call).fault).collect()
    }

    #[test]
    fn sim_faults_are_deterministic_for_a_seed() {
        let a = run(&mut Faults::new(errors(42, 0.3), vec![]), Cloud::Aws, "RunInstances", 200);
        let b = run(&mut Faults::new(errors(42, 0.3), vec![]), Cloud::Aws, "RunInstances", 200);
        let c = run(&mut Faults::new(errors(43, 0.3), vec![]), Cloud::Aws, "RunInstances", 200);
        assert_eq!(a, b);
        assert_ne!(a, c, "another seed, other faults");
        let mut interleaved = Faults::new(errors(42, 0.3), vec![]);
        let mixed: Vec<Option<Fault>> = (0..200)
            .map(|_| {
                interleaved.check(Cloud::Gcp, "", "instances.list");
                interleaved.check(Cloud::Aws, "", "RunInstances").fault
            })
            .collect();
        assert_eq!(mixed, a, "a cloud's faults do not depend on other clouds' calls");
    }

    #[test]
    fn sim_faults_error_share_is_close_to_the_rate_and_uses_both_shapes() {
        let outcomes = run(&mut Faults::new(errors(7, 0.10), vec![]), Cloud::Gcp, "instances.list", 20_000);
        let failed = outcomes.iter().filter(|o| o.is_some()).count();
        assert!((1_800..=2_200).contains(&failed), "{failed} of 20000 at 10%");
        for variant in [0, 1] {
            assert!(outcomes.contains(&Some(Fault::Transient { variant })));
        }
        assert!(run(&mut Faults::new(errors(7, 0.0), vec![]), Cloud::Gcp, "x", 1000).iter().all(Option::is_none));
        assert!(run(&mut Faults::new(errors(7, 1.0), vec![]), Cloud::Gcp, "x", 1000).iter().all(Option::is_some));
    }

    #[test]
    fn sim_faults_per_call_rate_overrides_the_default() {
        let mut config = errors(1, 0.0).unwrap();
        config.per_call.insert("RunInstances".into(), 1.0);
        let mut faults = Faults::new(Some(config), vec![]);
        assert!(run(&mut faults, Cloud::Aws, "DescribeInstances", 100).iter().all(Option::is_none));
        assert!(run(&mut faults, Cloud::Aws, "RunInstances", 100).iter().all(Option::is_some));
    }

    #[test]
    fn sim_faults_bucket_admits_a_burst_then_one_call_in_refill_every() {
        let limit = RateLimit { cloud: Cloud::Aws, call: Some("RunInstances".into()), bucket: 3, refill_every: 2 };
        let mut faults = Faults::new(None, vec![limit]);
        let pattern: String = run(&mut faults, Cloud::Aws, "RunInstances", 12)
            .iter()
            .map(|o| match o {
                None => '.',
                Some(Fault::Throttled) => 'T',
                Some(Fault::Transient { .. }) => 'E',
                Some(Fault::Reset) => 'R',
                Some(Fault::Credentials(_)) => 'C',
            })
            .collect();
        // Call 2 refills the token call 1 took; the burst lasts until the
        // bucket is dry, then every second call gets the refilled token.
        assert_eq!(pattern, "......T.T.T.");
        assert!(run(&mut faults, Cloud::Aws, "DescribeInstances", 10).iter().all(Option::is_none), "other kinds pass");
        assert!(run(&mut faults, Cloud::Gcp, "RunInstances", 10).iter().all(Option::is_none), "other clouds pass");
    }

    #[test]
    fn sim_faults_buckets_are_per_region_and_cover_every_call_without_call() {
        let limit = RateLimit { cloud: Cloud::Aws, call: None, bucket: 1, refill_every: 3 };
        let mut faults = Faults::new(None, vec![limit]);
        let mut check = |region: &str, call: &str| faults.check(Cloud::Aws, region, call).fault;
        assert_eq!(check("us-east-1", "RunInstances"), None);
        assert_eq!(check("us-east-1", "DescribeInstances"), Some(Fault::Throttled));
        assert_eq!(check("us-west-2", "DescribeInstances"), None, "own bucket per region");
        assert_eq!(check("us-east-1", "CreateTags"), None, "third call refills");
    }

    #[test]
    fn sim_faults_every_call_kind_has_one_cloud() {
        assert_eq!(cloud_of_call("instances.bulkInsert"), Some(Cloud::Gcp));
        assert_eq!(cloud_of_call("Operations_Get"), Some(Cloud::Azure));
        assert_eq!(cloud_of_call("RunInstance"), None);
    }

    #[test]
    fn sim_faults_resets_and_slow_calls_keep_to_their_rates_and_seed() {
        let config = ErrorFaults {
            error_rate: 0.10,
            reset_rate: 0.05,
            slow_rate: 0.20,
            slow_by: Duration::from_secs(30),
            latency: Duration::from_secs(2),
            ..ErrorFaults::seeded(9)
        };
        let verdicts = |config: &ErrorFaults| -> Vec<Verdict> {
            let mut faults = Faults::new(Some(config.clone()), vec![]);
            (0..20_000).map(|_| faults.check(Cloud::Azure, "", "VirtualMachines_Get")).collect()
        };
        let all = verdicts(&config);
        assert_eq!(all, verdicts(&config), "the same seed, the same fates");
        let count = |wanted: fn(&Verdict) -> bool| all.iter().filter(|v| wanted(v)).count();
        let errors = count(|v| matches!(v.fault, Some(Fault::Transient { .. })));
        let resets = count(|v| v.fault == Some(Fault::Reset));
        let slow = count(|v| v.delay == Duration::from_secs(32));
        assert!((1_800..=2_200).contains(&errors), "{errors} errors of 20000 at 10%");
        assert!((850..=1_150).contains(&resets), "{resets} resets of 20000 at 5%");
        assert!((3_700..=4_300).contains(&slow), "{slow} slow calls of 20000 at 20%");
        assert!(
            all.iter().all(|v| v.fault.is_none() || v.delay == Duration::from_secs(2)),
            "refused calls are not slow"
        );
        assert_eq!(count(|v| v.delay < Duration::from_secs(2)), 0, "every call takes the latency");
        // The bands share one roll: adding resets and slow calls moves no error.
        let errors_only = verdicts(&ErrorFaults { error_rate: 0.10, ..ErrorFaults::seeded(9) });
        for (with, without) in all.iter().zip(&errors_only) {
            assert_eq!(matches!(with.fault, Some(Fault::Transient { .. })), without.fault.is_some());
        }
    }

    #[test]
    fn sim_faults_latency_per_call_overrides_and_throttled_calls_take_it_too() {
        let mut config = ErrorFaults { latency: Duration::from_secs(2), ..ErrorFaults::seeded(3) };
        config.latency_per_call.insert("RunInstances".into(), Duration::from_secs(5));
        let limit = RateLimit { cloud: Cloud::Aws, call: None, bucket: 1, refill_every: 100 };
        let mut faults = Faults::new(Some(config), vec![limit]);
        assert_eq!(
            faults.check(Cloud::Aws, "", "RunInstances"),
            Verdict { fault: None, delay: Duration::from_secs(5) }
        );
        assert_eq!(
            faults.check(Cloud::Aws, "", "DescribeInstances"),
            Verdict { fault: Some(Fault::Throttled), delay: Duration::from_secs(2) }
        );
        let mut none = Faults::new(None, vec![]);
        assert_eq!(none.check(Cloud::Gcp, "", "instances.get"), Verdict { fault: None, delay: Duration::ZERO });
    }
}
