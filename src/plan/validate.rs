//! Stage two of loading a plan: checking the raw plan against the rules and the
//! catalog, filling defaults, and building the validated [`Plan`].
//!
//! Each check records its problems and carries on, so one run reports all of
//! them. A value that failed its own check is left out of later checks that
//! depend on it, so that one mistake is reported once, not once per consequence.

use super::LoadOptions;
use super::diagnostic::{Problems, redacted};
use super::fleet::{FleetChecker, MAX_NODES};
use super::model::{
    AwsConfig, AzureConfig, DEFAULT_SHORTAGE_TTL, Disruption, GcpConfig, MAX_DURATION, Plan, Providers, Rebalance,
};
use super::raw::{RawAws, RawAzure, RawGcp, RawOffering, RawPlan, RawProviders, RawRebalance};
use super::reader::{Located, closest};
use crate::catalog::{Catalog, OverrideProblem};
use crate::model::OfferingOverride;
use crate::model::{Cloud, MAX_NAME_LEN, is_valid_name};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Most GPUs an `[[offerings]]` node may carry: no cloud sells more than 16
/// per node, so anything past 64 is a typo.
const MAX_GPUS_PER_NODE: u32 = 64;

/// Checks `raw` and builds the plan; `None` when `problems` recorded anything.
pub(crate) fn validate(
    raw: RawPlan,
    source_name: &str,
    base_dir: &Path,
    options: LoadOptions,
    catalog: &Catalog,
    problems: &mut Problems,
) -> Option<Plan> {
    let name = raw.name.as_ref().and_then(|name| check_name(name, "plan", problems));
    let shortage_ttl = match &raw.shortage_ttl {
        Some(ttl) => check_shortage_ttl(ttl, problems),
        None => Some(DEFAULT_SHORTAGE_TTL),
    };
    let rebalance =
        raw.rebalance.as_ref().map_or(Some(Rebalance::default()), |r| check_rebalance(r, base_dir, problems));
    let (offerings, catalog) = check_offerings(&raw.offerings, catalog, problems);
    let before_providers = problems.len();
    let providers = raw.providers.as_ref().map(|p| check_providers(p, &catalog, problems)).unwrap_or_default();
    // With a broken provider section, "not configured" would be an echo of it.
    let every_provider_built = raw.providers.as_ref().is_some_and(|p| {
        p.aws.is_some() == providers.aws.is_some()
            && p.gcp.is_some() == providers.gcp.is_some()
            && p.azure.is_some() == providers.azure.is_some()
    });
    let providers_ok = every_provider_built && problems.len() == before_providers;

    let checker = FleetChecker {
        catalog: &catalog,
        providers: &providers,
        providers_ok,
        base_dir,
        startup_outside_allowed: options.allow_startup_outside,
    };
    let mut fleets = BTreeMap::new();
    for (fleet_name, raw_fleet) in &raw.fleets {
        if let Some(fleet) = checker.check(fleet_name, raw_fleet, problems) {
            fleets.insert(fleet.name.clone(), fleet);
        }
    }

    if !problems.is_empty() {
        return None;
    }
    Some(Plan {
        name: name?,
        path: source_name.into(),
        providers,
        fleets,
        shortage_ttl: shortage_ttl?,
        offerings,
        rebalance: rebalance?,
    })
}

/// Plan and fleet names end up in tags, labels and file names: lowercase
/// letters, digits and inner `-`, like a DNS label.
pub(crate) fn check_name(name: &Located<String>, what: &str, problems: &mut Problems) -> Option<String> {
    let value = &name.value;
    if is_valid_name(value) {
        return Some(value.clone());
    }
    let problem = problems.error(name.span.clone(), format!("{what} name `{value}` is not a valid name"));
    problem.help(format!(
        "use 1 to {MAX_NAME_LEN} lowercase letters, digits and `-` (not first or last): it is used in ownership tags"
    ));
    let suggestion = suggest_name(value);
    if !suggestion.is_empty() && suggestion != *value {
        problem.help(format!("for example `{suggestion}`"));
    }
    None
}

fn suggest_name(value: &str) -> String {
    let lowered: String = value
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
        .collect();
    let trimmed = lowered.trim_matches('-');
    trimmed.chars().take(MAX_NAME_LEN).collect::<String>().trim_end_matches('-').to_string()
}

fn check_shortage_ttl(ttl: &Located<String>, problems: &mut Problems) -> Option<Duration> {
    check_duration("shortage_ttl", ttl, "a shortage is worth remembering for minutes to days; try \"5m\"", problems)
}

/// A positive duration of at most [`MAX_DURATION`], as humantime writes it.
fn check_duration(key: &str, value: &Located<String>, hint: &str, problems: &mut Problems) -> Option<Duration> {
    match humantime::parse_duration(&value.value) {
        Ok(duration) if duration > MAX_DURATION => {
            problems.error(value.span.clone(), format!("{key} `{}` is longer than a year", value.value)).help(hint);
            None
        }
        Ok(duration) if !duration.is_zero() => Some(duration),
        Ok(_) => {
            problems.error(value.span.clone(), format!("{key} must be longer than zero")).help(hint);
            None
        }
        Err(error) => {
            problems
                .error(value.span.clone(), format!("{key} `{}` is not a duration: {error}", value.value))
                .help("write it like \"90s\", \"5m\" or \"1h 30m\"");
            None
        }
    }
}

/// The `[rebalance]` table, with defaults for what it leaves out.
fn check_rebalance(raw: &RawRebalance, base_dir: &Path, problems: &mut Problems) -> Option<Rebalance> {
    let defaults = Rebalance::default();
    let every = match &raw.every {
        None => Some(defaults.every),
        Some(value) => {
            check_duration("every", value, "a round every few minutes suits most fleets; try \"5m\"", problems)
        }
    };
    let max_disruption = match &raw.max_disruption {
        None => Some(defaults.max_disruption),
        Some(value) => check_disruption(value, problems),
    };
    let hint = "nodes move back once the better offering has been free this long; try \"15m\"";
    let move_back_after = match &raw.move_back_after {
        None => Some(defaults.move_back_after),
        Some(value) => check_duration("move_back_after", value, hint, problems),
    };
    let min_gain = match &raw.min_gain {
        None => Some(defaults.min_gain),
        Some(value) => check_min_gain(value, problems),
    };
    let drain = raw.drain.as_ref().map(|path| check_drain(path, base_dir, problems));
    let drain_timeout = match &raw.drain_timeout {
        None => Some(defaults.drain_timeout),
        Some(value) => {
            check_duration("drain_timeout", value, "give a drain minutes to move work away; try \"10m\"", problems)
        }
    };
    Some(Rebalance {
        every: every?,
        max_disruption: max_disruption?,
        move_back_after: move_back_after?,
        min_gain: min_gain?,
        drain: drain.map_or(Some(None), |d| d.map(Some))?,
        drain_timeout: drain_timeout?,
    })
}

/// The drain hook: an existing regular file, relative to the plan file.
fn check_drain(path: &Located<String>, base_dir: &Path, problems: &mut Problems) -> Option<std::path::PathBuf> {
    let full = base_dir.join(&path.value);
    match std::fs::metadata(&full) {
        Ok(meta) if meta.is_file() && !path.value.trim().is_empty() => Some(full),
        Ok(_) => {
            problems
                .error(path.span.clone(), format!("drain `{}` is not a file", path.value))
                .help("name an executable script, relative to the plan file");
            None
        }
        Err(error) => {
            problems
                .error(path.span.clone(), format!("cannot find drain script `{}`: {error}", path.value))
                .help(format!("the path is relative to the plan file, so gpufleet looked for {}", full.display()));
            None
        }
    }
}

fn check_disruption(value: &Located<String>, problems: &mut Problems) -> Option<Disruption> {
    let text = value.value.trim();
    let parsed = match text.strip_suffix('%') {
        Some(percent) => percent.parse::<u32>().ok().filter(|p| *p <= 100).map(Disruption::Percent),
        None => text.parse::<u32>().ok().filter(|n| *n <= MAX_NODES).map(Disruption::Nodes),
    };
    if parsed.is_none() {
        problems
            .error(value.span.clone(), format!("max_disruption `{}` is neither a node count nor a percentage", text))
            .help(format!(
                "write a count of nodes per round and fleet (0 to {MAX_NODES}), or a share of the fleet from \"0%\" to \"100%\""
            ));
    }
    parsed
}

fn check_min_gain(value: &Located<String>, problems: &mut Problems) -> Option<f64> {
    let parsed = value
        .value
        .trim()
        .strip_suffix('%')
        .and_then(|p| p.parse::<f64>().ok())
        .filter(|p| p.is_finite() && (0.0..100.0).contains(p));
    if parsed.is_none() {
        problems
            .error(value.span.clone(), format!("min_gain `{}` is not a percentage below 100%", value.value))
            .help("write how much cheaper per GPU-hour a move must make a node, like \"5%\"");
    }
    parsed.map(|p| p / 100.0)
}

/// Checks `[[offerings]]` and applies the valid ones to the catalog; later checks
/// use that catalog, exactly as the planner will.
fn check_offerings(
    entries: &[Located<RawOffering>],
    catalog: &Catalog,
    problems: &mut Problems,
) -> (Vec<OfferingOverride>, Catalog) {
    let mut overrides = Vec::new();
    let mut sources = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let Some(parsed) = parse_override(&entry.value, problems) else { continue };
        let key = (parsed.cloud, &parsed.instance_type, &parsed.region, &parsed.zone);
        if let Some(first) =
            overrides.iter().position(|o: &OfferingOverride| (o.cloud, &o.instance_type, &o.region, &o.zone) == key)
        {
            let (first_index, _): (usize, &Located<RawOffering>) = sources[first];
            problems
                .error(
                    entry.span.clone(),
                    format!("[[offerings]] entry {} repeats entry {}", index + 1, first_index + 1),
                )
                .help(format!(
                    "both give {} {} in {}; keep one of them",
                    parsed.cloud,
                    parsed.instance_type,
                    parsed.zone.as_deref().unwrap_or(&parsed.region),
                ));
            continue;
        }
        overrides.push(parsed);
        sources.push((index, entry));
    }

    let applied = match catalog.with_overrides(&overrides) {
        Ok(applied) => applied,
        Err(errors) => {
            for error in &errors {
                let (_, entry) = sources[error.index];
                let span =
                    span_for_override_problem(&entry.value, &error.problem).unwrap_or_else(|| entry.span.clone());
                let problem = problems.error(span, error.problem.to_string());
                match &error.problem {
                    OverrideProblem::NewRegionNeedsJurisdiction { .. } => problem.help(format!(
                        "add `jurisdiction = \"..\"`; known jurisdictions: {}",
                        catalog.jurisdictions().join(", ")
                    )),
                    OverrideProblem::NewTypeNeedsShape { .. } => problem
                        .help("add `gpu = \"...\"` and `gpus_per_node = N`, or check the instance type's spelling"),
                    OverrideProblem::ShapeMismatch { .. } | OverrideProblem::JurisdictionMismatch { .. } => {
                        problem.help("leave the field out: the catalog already knows it")
                    }
                    OverrideProblem::ZoneOnRegionalCloud { .. } | OverrideProblem::ZoneOutsideRegion { .. } => {
                        problem.help("remove `zone`, or name a zone of the region")
                    }
                };
            }
            // Go on with the entries that do apply, so fleet checks still see them.
            let failed: Vec<usize> = errors.iter().map(|e| e.index).collect();
            let good: Vec<OfferingOverride> =
                overrides.iter().enumerate().filter(|(i, _)| !failed.contains(i)).map(|(_, o)| o.clone()).collect();
            catalog.with_overrides(&good).unwrap_or_else(|_| catalog.clone())
        }
    };
    (overrides, applied)
}

fn span_for_override_problem(entry: &RawOffering, problem: &OverrideProblem) -> Option<std::ops::Range<usize>> {
    let span = |field: &Option<Located<_>>| field.as_ref().map(|l: &Located<String>| l.span.clone());
    match problem {
        OverrideProblem::NewTypeNeedsShape { .. } => span(&entry.instance_type),
        OverrideProblem::NewRegionNeedsJurisdiction { .. } => span(&entry.region),
        OverrideProblem::ShapeMismatch { field: "GPU model", .. } => span(&entry.gpu),
        OverrideProblem::ShapeMismatch { .. } => entry.gpus_per_node.as_ref().map(|l| l.span.clone()),
        OverrideProblem::JurisdictionMismatch { .. } => span(&entry.jurisdiction),
        OverrideProblem::ZoneOnRegionalCloud { .. } | OverrideProblem::ZoneOutsideRegion { .. } => span(&entry.zone),
    }
}

/// One `[[offerings]]` entry as an override, if its fields are well-formed.
fn parse_override(entry: &RawOffering, problems: &mut Problems) -> Option<OfferingOverride> {
    let cloud = entry.cloud.as_ref().and_then(|c| parse_cloud(c, problems));
    let instance_type = entry.instance_type.as_ref().and_then(|t| non_empty(t, "instance_type", problems));
    let region = entry.region.as_ref().and_then(|r| non_empty(r, "region", problems));
    let zone = match &entry.zone {
        Some(z) => Some(non_empty(z, "zone", problems)?),
        None => None,
    };
    let gpus_per_node = match &entry.gpus_per_node {
        Some(g) => Some(positive_u32(g, "gpus_per_node", problems).filter(|n| {
            let fits = *n <= MAX_GPUS_PER_NODE;
            if !fits {
                problems
                    .error(
                        g.span.clone(),
                        format!("gpus_per_node = {n} is more than the {MAX_GPUS_PER_NODE} a node may carry"),
                    )
                    .help("no cloud sells a node with more than 16 GPUs; check for a typo");
            }
            fits
        })?),
        None => None,
    };
    let jurisdiction = match &entry.jurisdiction {
        Some(j) if is_jurisdiction_code(&j.value) => Some(j.value.clone()),
        Some(j) => {
            problems
                .error(j.span.clone(), format!("jurisdiction `{}` is not a jurisdiction code", j.value))
                .help("use two or three capital letters, such as US, EU, UK or JP");
            return None;
        }
        None => None,
    };
    let price_per_hour = match &entry.price_per_hour {
        Some(p) if p.value.is_finite() && p.value > 0.0 => Some(p.value),
        Some(p) => {
            problems
                .error(p.span.clone(), format!("price_per_hour must be a positive amount of USD, found {}", p.value))
                .help("give the on-demand price of one instance for one hour, e.g. 55.04");
            return None;
        }
        None => None,
    };
    Some(OfferingOverride {
        cloud: cloud?,
        instance_type: instance_type?,
        region: region?,
        zone,
        gpu: entry.gpu.as_ref().map(|g| g.value.clone()),
        gpus_per_node,
        jurisdiction,
        price_per_hour,
    })
}

fn is_jurisdiction_code(code: &str) -> bool {
    (2..=3).contains(&code.len()) && code.chars().all(|c| c.is_ascii_uppercase())
}

pub(crate) fn parse_cloud(name: &Located<String>, problems: &mut Problems) -> Option<Cloud> {
    if let Some(cloud) = Cloud::parse(&name.value) {
        return Some(cloud);
    }
    let problem = problems.error(name.span.clone(), format!("unknown cloud `{}`", name.value));
    match closest(&name.value, Cloud::ALL.iter().map(|c| c.as_str())) {
        Some(suggestion) => problem.help(format!("did you mean `{suggestion}`?")),
        None => problem.help("clouds are aws, gcp and azure"),
    };
    None
}

fn non_empty(value: &Located<String>, key: &str, problems: &mut Problems) -> Option<String> {
    if value.value.trim().is_empty() {
        problems.error(value.span.clone(), format!("`{key}` must not be empty"));
        return None;
    }
    Some(value.value.clone())
}

pub(crate) fn positive_u32(value: &Located<i128>, key: &str, problems: &mut Problems) -> Option<u32> {
    match u32::try_from(value.value) {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            problems
                .error(value.span.clone(), format!("`{key}` must be a positive whole number, found {}", value.value));
            None
        }
    }
}

fn check_providers(raw: &RawProviders, catalog: &Catalog, problems: &mut Problems) -> Providers {
    let aws = raw.aws.as_ref().and_then(|aws| check_aws(&aws.value, catalog, problems));
    let gcp = raw.gcp.as_ref().and_then(|gcp| check_gcp(&gcp.value, catalog, problems));
    let azure = raw.azure.as_ref().and_then(|azure| check_azure(&azure.value, catalog, problems));
    if raw.aws.is_none() && raw.gcp.is_none() && raw.azure.is_none() {
        problems
            .error(raw.span.clone(), "no provider is configured")
            .help("add a [providers.aws], [providers.gcp] or [providers.azure] section with where this plan may run");
    }
    Providers { aws, gcp, azure }
}

fn check_aws(raw: &RawAws, catalog: &Catalog, problems: &mut Problems) -> Option<AwsConfig> {
    let regions = raw.regions.as_ref().and_then(|regions| check_regions(Cloud::Aws, regions, catalog, problems));
    let endpoint = check_endpoint(raw.endpoint.as_ref(), problems);
    let profile = optional(raw.profile.as_ref(), |p| non_empty(p, "profile", problems));
    let configured = regions.as_deref().unwrap_or_default();
    let zones: Vec<&str> = configured
        .iter()
        .filter_map(|r| catalog.region(Cloud::Aws, r))
        .flat_map(|r| r.zones.iter().map(String::as_str))
        .collect();
    let subnets = optional(raw.subnets.as_ref(), |subnets| {
        let mut by_zone = BTreeMap::new();
        let mut all_good = true;
        for (zone, id) in &subnets.value {
            all_good &= check_place(Cloud::Aws, "zone", zone, &zones, problems, regions.is_some());
            all_good &= check_id(id, "subnet", "subnet id", "subnet-0123456789abcdef0", problems);
            by_zone.insert(zone.value.clone(), id.value.clone());
        }
        all_good.then_some(by_zone)
    });
    let region_names: Vec<&str> = configured.iter().map(String::as_str).collect();
    let security_groups = optional(raw.security_groups.as_ref(), |groups| {
        let mut by_region = BTreeMap::new();
        let mut all_good = true;
        for (region, ids) in &groups.value {
            all_good &= check_place(Cloud::Aws, "region", region, &region_names, problems, regions.is_some());
            if ids.value.is_empty() || ids.value.len() > MAX_SECURITY_GROUPS {
                problems
                    .error(ids.span.clone(), format!("{} security groups for {}", ids.value.len(), region.value))
                    .help(format!(
                        "give 1 to {MAX_SECURITY_GROUPS} (EC2's most per network interface), or leave the region out for its VPC's default group"
                    ));
                all_good = false;
            }
            for id in &ids.value {
                all_good &= check_id(id, "sg", "security group id", "sg-0123456789abcdef0", problems);
            }
            by_region.insert(region.value.clone(), ids.value.iter().map(|id| id.value.clone()).collect::<Vec<_>>());
        }
        all_good.then_some(by_region)
    });
    Some(AwsConfig {
        regions: regions?,
        endpoint: endpoint?,
        profile: profile?,
        subnets: subnets?.unwrap_or_default(),
        security_groups: security_groups?.unwrap_or_default(),
    })
}

/// Most security groups an EC2 network interface takes (its quota's ceiling).
const MAX_SECURITY_GROUPS: usize = 16;

/// A key of a per-zone or per-region table: one the provider configures.
/// Without a sound list of configured places (`known_ok` false) nothing is
/// said, as it would echo that list's own problem.
fn check_place(
    cloud: Cloud,
    kind: &str,
    place: &Located<String>,
    known: &[&str],
    problems: &mut Problems,
    known_ok: bool,
) -> bool {
    if !known_ok || known.contains(&place.value.as_str()) {
        return true;
    }
    let problem = problems
        .error(place.span.clone(), format!("{cloud} {kind} `{}` is not one the plan places in", place.value))
        .label("not configured");
    match closest(&place.value, known.iter().copied()) {
        Some(suggestion) => problem.help(format!("did you mean `{suggestion}`?")),
        None => problem.help(format!("configured {kind}s: {}", known.join(", "))),
    };
    false
}

/// An EC2 resource id: `prefix-` and 8 or 17 lowercase hex digits.
fn check_id(id: &Located<String>, prefix: &str, what: &str, example: &str, problems: &mut Problems) -> bool {
    let valid = id.value.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('-')).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    });
    if !valid {
        problems
            .error(id.span.clone(), format!("`{}` is not an EC2 {what}", id.value))
            .help(format!("an EC2 {what} is `{prefix}-` and 8 or 17 lowercase hex digits, e.g. \"{example}\""));
    }
    valid
}

fn check_gcp(raw: &RawGcp, catalog: &Catalog, problems: &mut Problems) -> Option<GcpConfig> {
    let project = raw.project.as_ref().and_then(|p| {
        let v = &p.value;
        let valid = (6..=30).contains(&v.len())
            && v.starts_with(|c: char| c.is_ascii_lowercase())
            && !v.ends_with('-')
            && v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            return Some(v.clone());
        }
        problems
            .error(p.span.clone(), format!("`{v}` is not a Google Cloud project id"))
            .help("project ids are 6 to 30 lowercase letters, digits and `-`, starting with a letter");
        None
    });
    let zones = raw.zones.as_ref().and_then(|zones| check_zones(zones, catalog, problems));
    let endpoint = check_endpoint(raw.endpoint.as_ref(), problems);
    let network = optional(raw.network.as_ref(), |network| {
        check_gce_resource(network, &["global", "networks"], "network", "gpu-net", problems)
    });
    let regions: Vec<&str> = zones
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|zone| catalog.regions_of(Cloud::Gcp).find(|r| r.zones.contains(zone)))
        .map(|r| r.name.as_str())
        .collect();
    let subnetworks = optional(raw.subnetworks.as_ref(), |subnetworks| {
        let mut by_region = BTreeMap::new();
        let mut all_good = true;
        for (region, subnetwork) in &subnetworks.value {
            all_good &= check_place(Cloud::Gcp, "region", region, &regions, problems, zones.is_some());
            let segments = ["regions", region.value.as_str(), "subnetworks"];
            match check_gce_resource(subnetwork, &segments, "subnetwork", "gpu-subnet", problems) {
                Some(value) => _ = by_region.insert(region.value.clone(), value),
                None => all_good = false,
            }
        }
        all_good.then_some(by_region)
    });
    Some(GcpConfig {
        project: project?,
        zones: zones?,
        endpoint: endpoint?,
        network: network?,
        subnetworks: subnetworks?.unwrap_or_default(),
    })
}

/// A Compute Engine resource: a name, or `projects/P/<segments>/NAME` (a
/// Shared VPC host project's), with Compute Engine's name syntax: the value
/// goes into a URL path.
fn check_gce_resource(
    value: &Located<String>,
    segments: &[&str],
    what: &str,
    example: &str,
    problems: &mut Problems,
) -> Option<String> {
    let text = value.value.as_str();
    let name = match text.strip_prefix("projects/") {
        None => Some(text),
        Some(rest) => rest.split_once('/').and_then(|(project, path)| {
            let project_ok = !project.is_empty()
                && project.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c));
            let prefix = format!("{}/", segments.join("/"));
            path.strip_prefix(&prefix).filter(|_| project_ok)
        }),
    };
    if name.is_some_and(is_gce_name) {
        return Some(text.to_string());
    }
    problems.error(value.span.clone(), format!("`{text}` is not a Compute Engine {what}")).help(format!(
        "write a name like \"{example}\" (1 to 63 lowercase letters, digits and `-`, starting with a letter) or \"projects/PROJECT/{}/NAME\"",
        segments.join("/")
    ));
    None
}

/// A Compute Engine resource name (RFC 1035 label).
pub(crate) fn is_gce_name(n: &str) -> bool {
    (1..=63).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && !n.ends_with('-')
        && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn check_azure(raw: &RawAzure, catalog: &Catalog, problems: &mut Problems) -> Option<AzureConfig> {
    let subscription = raw.subscription.as_ref().and_then(|s| {
        if uuid::Uuid::parse_str(&s.value).is_ok() && s.value.len() == 36 {
            return Some(s.value.to_ascii_lowercase());
        }
        problems
            .error(s.span.clone(), format!("`{}` is not an Azure subscription id", s.value))
            .help("a subscription id is a GUID such as \"00000000-0000-0000-0000-000000000000\"");
        None
    });
    let resource_group = raw.resource_group.as_ref().and_then(|g| {
        let v = &g.value;
        let valid = (1..=90).contains(&v.len())
            && !v.ends_with('.')
            && v.chars().all(|c| c.is_alphanumeric() || "-_.()".contains(c));
        if valid {
            return Some(v.clone());
        }
        problems
            .error(g.span.clone(), format!("`{v}` is not an Azure resource group name"))
            .help("resource group names are 1 to 90 letters, digits, `-`, `_`, `.`, `(` and `)`, not ending in `.`");
        None
    });
    let regions = raw.regions.as_ref().and_then(|regions| check_regions(Cloud::Azure, regions, catalog, problems));
    let endpoint = check_endpoint(raw.endpoint.as_ref(), problems);
    let subnet = optional(raw.subnet.as_ref(), |subnet| {
        let lowered = subnet.value.to_ascii_lowercase();
        if lowered.starts_with("/subscriptions/")
            && lowered.contains("/providers/microsoft.network/virtualnetworks/")
            && lowered.contains("/subnets/")
        {
            return Some(subnet.value.clone());
        }
        problems
            .error(subnet.span.clone(), format!("`{}` is not a subnet resource id", subnet.value))
            .help("write /subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Network/virtualNetworks/VNET/subnets/SUBNET");
        None
    });
    let ssh_public_key =
        raw.ssh_public_key.as_ref().and_then(|key| check_ssh_public_key(key, "ssh_public_key", problems));
    Some(AzureConfig {
        subscription: subscription?,
        resource_group: resource_group?,
        regions: regions?,
        endpoint: endpoint?,
        subnet: subnet?,
        ssh_public_key: ssh_public_key?,
    })
}

/// An OpenSSH public key, one line of a `.pub` file.
pub(crate) fn check_ssh_public_key(key: &Located<String>, what: &str, problems: &mut Problems) -> Option<String> {
    let mut parts = key.value.split_whitespace();
    let kind = parts.next().unwrap_or_default();
    let known = ["ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"];
    if known.contains(&kind) && parts.next().is_some_and(|body| body.len() >= 16) {
        return Some(key.value.trim().to_string());
    }
    problems
        .error(key.span.clone(), format!("{what} is not an OpenSSH public key"))
        .help("paste the one line of a .pub file, e.g. \"ssh-ed25519 AAAAC3Nza... you@host\" (the public half only)");
    None
}

/// An optional endpoint override: absent is fine (`Some(None)`), present
/// and not an http(s) URL with a host is not (`None`). A user name or
/// password in it is refused without being repeated: credentials come from
/// the clouds' own chains, and an endpoint is printed in messages and sent
/// to token services (Azure derives its OAuth scope from it).
fn check_endpoint(endpoint: Option<&Located<String>>, problems: &mut Problems) -> Option<Option<String>> {
    optional(endpoint, |endpoint| {
        let text = &endpoint.value;
        let url = url::Url::parse(text).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
        match url {
            Some(url) if !url.username().is_empty() || url.password().is_some() => {
                problems
                    .error(
                        endpoint.span.clone(),
                        format!("endpoint `{}` carries a user name or password", redacted(text)),
                    )
                    .help("remove `user:password@`: gpufleet takes credentials only from the cloud's standard chain");
                None
            }
            Some(_) => Some(text.clone()),
            None => {
                problems
                    .error(endpoint.span.clone(), format!("endpoint `{}` is not an http(s) URL", redacted(text)))
                    .help("write it like \"http://127.0.0.1:5000\" or \"https://ec2.example.internal\"");
                None
            }
        }
    })
}

/// The zones of the Google Cloud provider: at least one, each known to the catalog, none twice.
fn check_zones(
    zones: &Located<Vec<Located<String>>>,
    catalog: &Catalog,
    problems: &mut Problems,
) -> Option<Vec<String>> {
    let known: Vec<&str> = catalog.regions_of(Cloud::Gcp).flat_map(|r| r.zones.iter().map(String::as_str)).collect();
    check_locations(Cloud::Gcp, "zone", zones, &known, problems)
}

/// Checks an optional value: `Some(None)` when absent, `None` when present but invalid.
pub(crate) fn optional<T, U>(value: Option<&T>, check: impl FnOnce(&T) -> Option<U>) -> Option<Option<U>> {
    match value {
        None => Some(None),
        Some(value) => check(value).map(Some),
    }
}

/// The regions of one provider: at least one, each known to the catalog, none twice.
fn check_regions(
    cloud: Cloud,
    regions: &Located<Vec<Located<String>>>,
    catalog: &Catalog,
    problems: &mut Problems,
) -> Option<Vec<String>> {
    let known: Vec<&str> = catalog.regions_of(cloud).map(|r| r.name.as_str()).collect();
    check_locations(cloud, "region", regions, &known, problems)
}

fn check_locations(
    cloud: Cloud,
    kind: &str,
    locations: &Located<Vec<Located<String>>>,
    known: &[&str],
    problems: &mut Problems,
) -> Option<Vec<String>> {
    if locations.value.is_empty() {
        let example = known.first().copied().unwrap_or("...");
        problems
            .error(locations.span.clone(), format!("[providers.{cloud}] lists no {kind}s"))
            .help(format!("name at least one {kind}, e.g. {kind}s = [\"{example}\"]"));
        return None;
    }
    let mut accepted: Vec<String> = Vec::new();
    let mut all_good = true;
    for location in &locations.value {
        if accepted.contains(&location.value) {
            problems.error(location.span.clone(), format!("{kind} `{}` is listed twice", location.value));
            all_good = false;
        } else if !known.contains(&location.value.as_str()) {
            let problem = problems
                .error(location.span.clone(), format!("unknown {cloud} {kind} `{}`", location.value))
                .label("not in the catalog");
            match closest(&location.value, known.iter().copied()) {
                Some(suggestion) => problem.help(format!("did you mean `{suggestion}`?")),
                None => problem.help(format!("{cloud} {kind}s in the catalog: {}", known.join(", "))),
            };
            problem.help(
                "a region the catalog lacks can be added with an [[offerings]] entry that gives its jurisdiction, or read from the clouds with `gpufleet catalog refresh PLAN`",
            );
            all_good = false;
        } else {
            accepted.push(location.value.clone());
        }
    }
    all_good.then_some(accepted)
}
