//! Checking one fleet: its shape against the catalog, its preferences against
//! the configured providers, its labels against tag rules, and finally whether
//! any offering can host it at all — asked of the planner's own
//! [`candidate_offerings`], so that validation and planning never disagree.

use super::diagnostic::Problems;
use super::model::{
    DEFAULT_GCP_SCOPE, Fleet, NodeSettings, PlacementPolicy, Preference, Providers, Spread, SpreadBy, StartupScript,
};
use super::offerings::{Exclusion, candidate_offerings};
use super::raw::{Labels, RawFleet, RawImages};
use super::reader::{Located, closest};
use super::validate::{check_name, check_ssh_public_key, optional, positive_u32};
use crate::catalog::{Catalog, Offering};
use crate::model::Cloud;
use std::collections::BTreeMap;
use std::path::Path;

/// More nodes than this in one fleet is a typo, not a plan.
pub(crate) const MAX_NODES: u32 = 10_000;

/// What gpufleet adds to a startup script, at most: the node's place,
/// exported for the script (about half a KiB), with room to spare.
const STARTUP_HEADROOM: usize = 1024;

/// The most user data each cloud takes: EC2 16 KiB, a Compute Engine
/// metadata value 256 KiB, Azure `customData` 64 KiB.
fn user_data_limit(cloud: Cloud) -> usize {
    match cloud {
        Cloud::Aws => 16 * 1024,
        Cloud::Gcp => 256 * 1024,
        Cloud::Azure => 64 * 1024 - 1,
    }
}

/// Tags gpufleet puts on every instance to recognize what it owns.
pub(crate) const OWNERSHIP_TAG_PREFIX: &str = "gpufleet-";

/// EC2 allows 50 tags per resource; gpufleet's ownership tags use 3 of them.
const MAX_LABELS: usize = 50 - 3;
const MAX_TAG_KEY_CHARS: usize = 128;
const MAX_TAG_VALUE_CHARS: usize = 256;

pub(crate) struct FleetChecker<'a> {
    pub catalog: &'a Catalog,
    pub providers: &'a Providers,
    /// False when the provider section had problems: checks against the
    /// configured places are then skipped, as they would only echo those problems.
    pub providers_ok: bool,
    pub base_dir: &'a Path,
    /// `--allow-startup-outside`: a `startup` script may live outside `base_dir`.
    pub startup_outside_allowed: bool,
}

impl FleetChecker<'_> {
    /// The validated fleet, or `None` after recording why not.
    pub(crate) fn check(&self, name: &Located<String>, raw: &RawFleet, problems: &mut Problems) -> Option<Fleet> {
        let context = format!("fleet `{}`", name.value);
        let fleet_name = check_name(name, "fleet", problems);
        let gpu = raw.gpu.as_ref().and_then(|gpu| self.check_gpu(gpu, problems));
        let gpus_per_node = raw
            .gpus_per_node
            .as_ref()
            .and_then(|g| positive_u32(g, "gpus_per_node", problems))
            .and_then(|g| self.check_node_shape(gpu.as_deref(), raw.gpus_per_node.as_ref()?, g, problems));
        let nodes = raw.nodes.as_ref().and_then(|n| check_nodes(n, problems));
        let min_nodes = check_min_nodes(raw.min_nodes.as_ref(), nodes, problems);
        let placement = check_placement(raw, problems);
        let prefer = optional(raw.prefer.as_ref(), |p| self.check_prefer(p, problems));
        let residency = optional(raw.residency.as_ref(), |r| self.check_residency(r, &context, problems));
        let max_price = optional(raw.max_price_per_gpu_hour.as_ref(), |p| check_price_ceiling(p, problems));
        let image = optional(raw.image.as_ref(), |i| check_images(i, problems));
        let startup =
            optional(raw.startup.as_ref(), |s| self.read_startup(s, image.clone().flatten().as_ref(), problems));
        let labels = optional(raw.labels.as_ref(), |l| check_labels(l, &context, problems));
        let node = check_node(raw, &context, problems);

        let fleet = Fleet {
            name: fleet_name?,
            gpu: gpu?,
            gpus_per_node: gpus_per_node?,
            nodes: nodes?,
            min_nodes: min_nodes?,
            placement: placement?,
            prefer: prefer?.unwrap_or_default(),
            residency: residency?,
            max_price_per_gpu_hour: max_price?,
            image: image?.unwrap_or_default(),
            startup: startup?,
            labels: labels?.unwrap_or_default(),
            node: node?,
        };
        // Only a fleet that is right in itself, under a sound provider section, is
        // worth asking where it can run; otherwise the answer would repeat problems
        // already reported.
        if !self.providers_ok {
            return None;
        }
        let usable_clouds = self.check_hosting(&fleet, name, problems)?;
        if usable_clouds.contains(&Cloud::Gcp) {
            check_gcp_labels(raw.labels.as_ref(), &context, problems)?;
        }
        if usable_clouds.contains(&Cloud::Azure) {
            check_azure_labels(raw.labels.as_ref(), &context, problems)?;
        }
        check_disk_limits(raw.disk_gb.as_ref(), &usable_clouds, &context, problems)?;
        Some(fleet)
    }

    fn check_gpu(&self, gpu: &Located<String>, problems: &mut Problems) -> Option<String> {
        let models = self.catalog.gpu_models();
        if models.contains(&gpu.value) {
            return Some(gpu.value.clone());
        }
        let problem =
            problems.error(gpu.span.clone(), format!("unknown GPU model `{}`", gpu.value)).label("not in the catalog");
        if let Some(suggestion) = closest(&gpu.value, models.iter().map(String::as_str)) {
            problem.help(format!("did you mean `{suggestion}`?"));
        }
        problem.help(format!("the catalog offers: {}", models.join(", ")));
        None
    }

    fn check_node_shape(
        &self,
        gpu: Option<&str>,
        at: &Located<i128>,
        gpus: u32,
        problems: &mut Problems,
    ) -> Option<u32> {
        // Without a known GPU model there is nothing to compare against.
        let Some(gpu) = gpu else { return Some(gpus) };
        let offered = self.catalog.gpus_per_node_offered(gpu);
        if offered.contains(&gpus) {
            return Some(gpus);
        }
        let shapes: Vec<String> = offered.iter().map(u32::to_string).collect();
        problems
            .error(at.span.clone(), format!("no instance type offers {gpu} with {gpus} GPUs per node"))
            .help(format!("{gpu} comes with {} GPUs per node", join_or(&shapes)));
        None
    }

    fn check_prefer(&self, prefer: &Located<Vec<Located<String>>>, problems: &mut Problems) -> Option<Vec<Preference>> {
        let mut preferences: Vec<Preference> = Vec::new();
        let mut all_good = true;
        for entry in &prefer.value {
            match self.parse_preference(entry, problems) {
                Some(preference) if preferences.contains(&preference) => {
                    problems.error(entry.span.clone(), format!("`{}` is listed twice in prefer", entry.value));
                    all_good = false;
                }
                Some(preference) => preferences.push(preference),
                None => all_good = false,
            }
        }
        all_good.then_some(preferences)
    }

    /// `"cloud"`, `"cloud:region"` or `"cloud:zone"`, naming only configured places.
    fn parse_preference(&self, entry: &Located<String>, problems: &mut Problems) -> Option<Preference> {
        let span = entry.span.clone();
        let (cloud_name, location) = match entry.value.split_once(':') {
            Some((cloud, location)) => (cloud, Some(location)),
            None => (entry.value.as_str(), None),
        };
        if cloud_name.is_empty() || location.is_some_and(|l| l.is_empty() || l.contains(':')) {
            problems
                .error(span, format!("prefer entry `{}` is malformed", entry.value))
                .help("write \"aws\", \"aws:us-east-1\" (a region) or \"gcp:us-central1-a\" (a zone)");
            return None;
        }
        let Some(cloud) = Cloud::parse(cloud_name) else {
            let problem =
                problems.error(span, format!("prefer entry `{}` names unknown cloud `{cloud_name}`", entry.value));
            match closest(cloud_name, Cloud::ALL.iter().map(|c| c.as_str())) {
                Some(suggestion) => problem.help(format!("did you mean `{suggestion}`?")),
                None => problem.help("clouds are aws, gcp and azure"),
            };
            return None;
        };
        if !self.providers_ok {
            return None;
        }
        let Some(configured) = self.providers.locations(cloud) else {
            let problem =
                problems.error(span, format!("prefer entry `{}` names {cloud}, which is not configured", entry.value));
            problem.help(format!("add a [providers.{cloud}] section, or remove this entry"));
            return None;
        };
        let Some(location) = location else {
            return Some(Preference { cloud, location: None });
        };
        // Zones are places only on clouds that place by zone.
        let configured_zones = self
            .catalog
            .regions_of(cloud)
            .filter(|r| cloud.places_by_zone() && configured.contains(&r.name))
            .flat_map(|r| r.zones.iter().map(String::as_str));
        let known: Vec<&str> = configured.iter().map(String::as_str).chain(configured_zones).collect();
        if known.contains(&location) {
            return Some(Preference { cloud, location: Some(location.to_string()) });
        }
        let problem = problems
            .error(
                span,
                format!("prefer entry `{}` names {location}, which is not a configured {cloud} region", entry.value),
            )
            .label("not configured");
        if let Some(region) =
            configured.iter().find(|r| location.starts_with(r.as_str())).filter(|_| !cloud.places_by_zone())
        {
            problem.help(format!("{cloud} places by region: prefer \"{cloud}:{region}\""));
        } else if let Some(suggestion) = closest(location, known.iter().copied()) {
            problem.help(format!("did you mean `{cloud}:{suggestion}`?"));
        }
        problem.help(format!("[providers.{cloud}] regions: {}", configured.join(", ")));
        None
    }

    fn check_residency(
        &self,
        residency: &Located<Vec<Located<String>>>,
        context: &str,
        problems: &mut Problems,
    ) -> Option<Vec<String>> {
        if residency.value.is_empty() {
            problems
                .error(residency.span.clone(), format!("residency of {context} is empty, so no region may host it"))
                .help("list the allowed jurisdictions, e.g. [\"US\"], or remove residency to allow any");
            return None;
        }
        let known = self.catalog.jurisdictions();
        let mut allowed: Vec<String> = Vec::new();
        let mut all_known = true;
        for jurisdiction in &residency.value {
            if known.contains(&jurisdiction.value) {
                if !allowed.contains(&jurisdiction.value) {
                    allowed.push(jurisdiction.value.clone());
                }
                continue;
            }
            all_known = false;
            let problem = problems
                .error(jurisdiction.span.clone(), format!("unknown jurisdiction `{}`", jurisdiction.value))
                .label("not in the catalog");
            if let Some(suggestion) = closest(&jurisdiction.value, known.iter().map(String::as_str)) {
                problem.help(format!("did you mean `{suggestion}`?"));
            }
            problem.help(format!("known jurisdictions: {}", known.join(", ")));
        }
        if !all_known {
            return None;
        }
        if !self.providers_ok {
            return Some(allowed);
        }
        // A residency no configured region satisfies is a mistake in itself,
        // whatever the GPU: say so in those terms.
        let mut configured: Vec<(Cloud, &str, &str)> = Vec::new();
        for cloud in Cloud::ALL {
            for name in self.providers.locations(cloud).unwrap_or_default() {
                if let Some(region) = self.catalog.region(cloud, name) {
                    configured.push((cloud, name.as_str(), region.jurisdiction.as_str()));
                }
            }
        }
        if !configured.is_empty() && !configured.iter().any(|(_, _, j)| allowed.iter().any(|a| a == j)) {
            let places: Vec<String> = configured.iter().map(|(c, n, j)| format!("{c} {n} ({j})")).collect();
            problems
                .error(residency.span.clone(), format!("no configured region is in {}", allowed.join(" or ")))
                .help(format!("configured regions: {}", places.join(", ")))
                .help("add a region under that jurisdiction to the provider, or widen residency");
            return None;
        }
        Some(allowed)
    }

    /// The script at `path`: a regular file inside the plan's directory
    /// (unless `--allow-startup-outside`), never a FIFO or device (which
    /// would hang the read), at most the user data the fleet's clouds take,
    /// of which no more than that is ever read.
    fn read_startup(
        &self,
        path: &Located<String>,
        images: Option<&BTreeMap<Cloud, String>>,
        problems: &mut Problems,
    ) -> Option<StartupScript> {
        let mut refuse = |message: String, help: String| {
            problems.error(path.span.clone(), message).help(help);
            None
        };
        let name = &path.value;
        if name.trim().is_empty() {
            return refuse("startup must name a file".into(), "give a path relative to the plan file".into());
        }
        let full = self.base_dir.join(name);
        let resolved = match full.canonicalize() {
            Ok(resolved) => resolved,
            Err(error) => {
                return refuse(
                    format!("cannot read startup script `{name}`: {}", io_reason(&error)),
                    format!("the path is relative to the plan file, so gpufleet looked for {}", full.display()),
                );
            }
        };
        let root = Path::new(".").join(self.base_dir).canonicalize().ok();
        if !self.startup_outside_allowed && !root.as_ref().is_some_and(|root| resolved.starts_with(root)) {
            return refuse(
                format!("startup script `{name}` is outside the plan file's directory: it is {}", resolved.display()),
                "move it next to the plan file, or pass --allow-startup-outside if the plan means it".into(),
            );
        }
        if !std::fs::metadata(&resolved).is_ok_and(|m| m.is_file()) {
            return refuse(
                format!("startup script `{name}` is not a regular file"),
                "name a script file, not a directory, FIFO or device".into(),
            );
        }
        let (cloud, limit) = self.startup_limit(images);
        let most = limit - STARTUP_HEADROOM;
        let content = match read_at_most(&resolved, most + 1) {
            Ok(bytes) if bytes.len() > most => {
                return refuse(
                    format!(
                        "startup script `{name}` is larger than {most} bytes, the most {cloud} user data leaves room for"
                    ),
                    format!(
                        "{cloud} takes {limit} bytes of user data and gpufleet adds the node's place: keep the \
                         script small and let it download the rest"
                    ),
                );
            }
            Ok(bytes) => String::from_utf8(bytes),
            Err(error) => {
                return refuse(
                    format!("cannot read startup script `{name}`: {}", io_reason(&error)),
                    format!("gpufleet looked for {}", full.display()),
                );
            }
        };
        match content {
            Ok(content) => Some(StartupScript { path: name.clone(), content }),
            Err(_) => refuse(
                format!("startup script `{name}` is not UTF-8 text"),
                "user data is a script or cloud-init text".into(),
            ),
        }
    }

    /// The smallest user-data limit among the clouds the fleet may run on
    /// (configured, and with an image when images are known), and its cloud.
    fn startup_limit(&self, images: Option<&BTreeMap<Cloud, String>>) -> (Cloud, usize) {
        Cloud::ALL
            .into_iter()
            .filter(|cloud| self.providers.locations(*cloud).is_some())
            .filter(|cloud| images.is_none_or(|images| images.contains_key(cloud)))
            .map(|cloud| (cloud, user_data_limit(cloud)))
            .min_by_key(|(_, limit)| *limit)
            .unwrap_or((Cloud::Aws, user_data_limit(Cloud::Aws)))
    }

    /// Asks the planner which offerings could host the fleet; when none can,
    /// says why each was excluded. Returns the clouds with at least one allowed offering.
    fn check_hosting(&self, fleet: &Fleet, name: &Located<String>, problems: &mut Problems) -> Option<Vec<Cloud>> {
        let candidates = candidate_offerings(fleet, self.providers, self.catalog);
        let mut usable: Vec<Cloud> = candidates.iter().filter(|(_, why)| why.is_none()).map(|(o, _)| o.cloud).collect();
        usable.dedup();
        if !usable.is_empty() || candidates.is_empty() {
            return Some(usable);
        }
        let problem = problems
            .error(name.span.clone(), format!("no offering can host fleet `{}`", fleet.name))
            .label(format!("{} × {} GPUs per node", fleet.gpu, fleet.gpus_per_node));
        for reason in explain_exclusions(fleet, &candidates) {
            problem.help(reason);
        }
        None
    }
}

/// One help line per reason an offering was excluded: first the offerings in
/// configured regions (what the user most likely meant), then the same types in
/// other regions, then other clouds. Regions and types are grouped onto one line.
fn explain_exclusions(fleet: &Fleet, candidates: &[(Offering, Option<Exclusion>)]) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut push = |line: String| {
        if !lines.contains(&line) {
            lines.push(line);
        }
    };
    let residency = fleet.residency.as_deref().unwrap_or_default().join(", ");
    let ceiling = fleet.max_price_per_gpu_hour.unwrap_or_default();
    for (offering, why) in candidates {
        // Residency and price belong to the region, so one line covers all its zones.
        let what = format!("{} {} in {}", offering.cloud, offering.instance_type, offering.region);
        match why {
            Some(Exclusion::OutsideResidency) => {
                push(format!("{what} is under {} jurisdiction, outside residency [{residency}]", offering.jurisdiction))
            }
            Some(Exclusion::OverPriceCeiling) => push(format!(
                "{what} costs ${:.2}/GPU-hour, above the ceiling of ${ceiling:.2}",
                offering.price_per_gpu_hour().unwrap_or_default()
            )),
            Some(Exclusion::PriceUnknownUnderCeiling) => {
                push(format!("{what} has no known price, so it cannot be held to the ceiling of ${ceiling:.2}"));
                push("an [[offerings]] entry can give its price".to_string());
            }
            _ => {}
        }
    }
    let excluded_as = |cloud: Cloud, exclusion: Exclusion| {
        let mut by_type: Vec<(&str, Vec<&str>)> = Vec::new();
        for (offering, why) in candidates {
            if offering.cloud != cloud || why.as_ref() != Some(&exclusion) {
                continue;
            }
            match by_type.iter_mut().find(|(t, _)| *t == offering.instance_type) {
                Some((_, regions)) if !regions.contains(&offering.region.as_str()) => regions.push(&offering.region),
                Some(_) => {}
                None => by_type.push((&offering.instance_type, vec![&offering.region])),
            }
        }
        by_type
    };
    let shape = format!("{} × {}", fleet.gpu, fleet.gpus_per_node);
    for cloud in Cloud::ALL {
        let types: Vec<&str> = excluded_as(cloud, Exclusion::NoImage).into_iter().map(|(t, _)| t).collect();
        if !types.is_empty() {
            push(format!(
                "{cloud} offers {shape} as {}, but the fleet has no {cloud} image: add it to `image` to run there",
                types.join(", ")
            ));
        }
    }
    for cloud in Cloud::ALL {
        for (instance_type, regions) in excluded_as(cloud, Exclusion::LocationNotConfigured) {
            let count = if regions.len() == 1 {
                "1 region that is".to_string()
            } else {
                format!("{} regions that are", regions.len())
            };
            push(format!("{cloud} also sells {instance_type} in {count} not configured: {}", regions.join(", ")));
        }
    }
    for cloud in Cloud::ALL {
        let types: Vec<&str> = excluded_as(cloud, Exclusion::CloudNotConfigured).into_iter().map(|(t, _)| t).collect();
        if !types.is_empty() {
            push(format!("{cloud} offers {shape} as {}, but [providers.{cloud}] is not configured", types.join(", ")));
        }
    }
    lines
}

fn check_nodes(nodes: &Located<i128>, problems: &mut Problems) -> Option<u32> {
    match nodes.value {
        n if n < 1 => {
            problems
                .error(nodes.span.clone(), format!("nodes must be at least 1, found {n}"))
                .help("to remove a fleet and its instances, delete its section from the plan");
            None
        }
        n if n > i128::from(MAX_NODES) => {
            problems
                .error(nodes.span.clone(), format!("nodes = {n} is more than the {MAX_NODES} one fleet may have"))
                .help("check for a typo, or split the capacity into several fleets");
            None
        }
        n => u32::try_from(n).ok(),
    }
}

/// `min_nodes` defaults to `nodes`; it can only be checked against a valid `nodes`.
fn check_min_nodes(min_nodes: Option<&Located<i128>>, nodes: Option<u32>, problems: &mut Problems) -> Option<u32> {
    let Some(min_nodes) = min_nodes else { return nodes };
    if min_nodes.value < 0 {
        problems.error(min_nodes.span.clone(), format!("min_nodes must not be negative, found {}", min_nodes.value));
        return None;
    }
    let nodes = nodes?;
    if min_nodes.value > i128::from(nodes) {
        problems
            .error(min_nodes.span.clone(), format!("min_nodes ({}) is greater than nodes ({nodes})", min_nodes.value))
            .help(format!("min_nodes is the smallest partial fill the fleet accepts: at most {nodes}"));
        return None;
    }
    u32::try_from(min_nodes.value).ok()
}

fn check_placement(raw: &RawFleet, problems: &mut Problems) -> Option<PlacementPolicy> {
    let policy = raw.placement.as_ref().map_or(Some("fill"), |placement| match placement.value.as_str() {
        known @ ("fill" | "spread" | "pack") => Some(known),
        other => {
            let problem = problems.error(placement.span.clone(), format!("unknown placement `{other}`"));
            if let Some(suggestion) = closest(other, ["fill", "spread", "pack"]) {
                problem.help(format!("did you mean `{suggestion}`?"));
            }
            problem.help(
                "placement is \"fill\" (offerings in preference order), \"spread\" (balanced across zones, regions \
                 or clouds) or \"pack\" (all nodes in one region)",
            );
            None
        }
    });
    if policy != Some("spread") {
        // Spread settings on a fleet that does not spread would silently do nothing.
        for (key, span) in [
            ("spread_by", raw.spread_by.as_ref().map(|s| &s.span)),
            ("max_skew", raw.max_skew.as_ref().map(|s| &s.span)),
        ] {
            if let (Some(span), Some(policy)) = (span, policy) {
                problems
                    .error(span.clone(), format!("`{key}` only applies to placement = \"spread\", not \"{policy}\""))
                    .help(format!("remove `{key}`, or set placement = \"spread\""));
            }
        }
    }
    match policy? {
        "fill" => Some(PlacementPolicy::Fill),
        "pack" => Some(PlacementPolicy::Pack),
        _ => {
            let by = optional(raw.spread_by.as_ref(), |by| check_spread_by(by, problems));
            let max_skew = optional(raw.max_skew.as_ref(), |skew| check_max_skew(skew, problems));
            Some(PlacementPolicy::Spread(Spread {
                by: by?.unwrap_or(SpreadBy::Zone),
                max_skew: max_skew?.unwrap_or(1),
            }))
        }
    }
}

fn check_spread_by(by: &Located<String>, problems: &mut Problems) -> Option<SpreadBy> {
    match by.value.as_str() {
        "zone" => Some(SpreadBy::Zone),
        "region" => Some(SpreadBy::Region),
        "cloud" => Some(SpreadBy::Cloud),
        other => {
            let problem = problems.error(by.span.clone(), format!("unknown spread_by `{other}`"));
            if let Some(suggestion) = closest(other, ["zone", "region", "cloud"]) {
                problem.help(format!("did you mean `{suggestion}`?"));
            }
            problem.help("spread_by is \"zone\", \"region\" or \"cloud\"");
            None
        }
    }
}

fn check_max_skew(skew: &Located<i128>, problems: &mut Problems) -> Option<u32> {
    match skew.value {
        n if n < 1 => {
            problems
                .error(skew.span.clone(), format!("max_skew must be at least 1, found {n}"))
                .help("max_skew = 1 keeps every zone, region or cloud within one node of the others");
            None
        }
        n if n > i128::from(MAX_NODES) => {
            problems.error(
                skew.span.clone(),
                format!("max_skew = {n} is more than the {MAX_NODES} nodes a fleet may have"),
            );
            None
        }
        n => u32::try_from(n).ok(),
    }
}

fn check_price_ceiling(price: &Located<f64>, problems: &mut Problems) -> Option<f64> {
    if price.value.is_finite() && price.value > 0.0 {
        return Some(price.value);
    }
    problems
        .error(
            price.span.clone(),
            format!("max_price_per_gpu_hour must be a positive amount of USD, found {}", price.value),
        )
        .help("give the most one GPU-hour may cost, e.g. 9.0, or remove the key for no ceiling");
    None
}

fn check_images(images: &RawImages, problems: &mut Problems) -> Option<BTreeMap<Cloud, String>> {
    let mut by_cloud = PerCloud::new(problems);
    by_cloud.accept(
        Cloud::Aws,
        images.aws.as_ref(),
        is_ami_id,
        "an AMI id",
        "an AMI id is `ami-` followed by 8 or 17 lowercase hex digits, e.g. \"ami-0123456789abcdef0\"",
    );
    by_cloud.accept(
        Cloud::Gcp,
        images.gcp.as_ref(),
        is_gce_image,
        "a Compute Engine image",
        "write \"projects/PROJECT/global/images/NAME\" or \"projects/PROJECT/global/images/family/FAMILY\"",
    );
    by_cloud.accept(
        Cloud::Azure,
        images.azure.as_ref(),
        is_azure_image,
        "an Azure image reference",
        "write a marketplace URN \"publisher:offer:sku:version\" or an image id \"/subscriptions/.../images/NAME\"",
    );
    let (values, all_good) = by_cloud.finish();
    all_good.then_some(values)
}

/// The values of a per-cloud table (`image`, `identity`), each in its
/// cloud's own syntax: the valid ones kept, the others reported where they
/// are written.
struct PerCloud<'p> {
    values: BTreeMap<Cloud, String>,
    problems: &'p mut Problems,
    all_good: bool,
}

impl<'p> PerCloud<'p> {
    fn new(problems: &'p mut Problems) -> PerCloud<'p> {
        PerCloud { values: BTreeMap::new(), problems, all_good: true }
    }

    fn accept(
        &mut self,
        cloud: Cloud,
        value: Option<&Located<String>>,
        valid: fn(&str) -> bool,
        what: &str,
        help: &str,
    ) {
        let Some(value) = value else { return };
        if valid(&value.value) {
            self.values.insert(cloud, value.value.clone());
        } else {
            self.problems.error(value.span.clone(), format!("`{}` is not {what}", value.value)).help(help);
            self.all_good = false;
        }
    }

    /// The values accepted, and whether every one was.
    fn finish(self) -> (BTreeMap<Cloud, String>, bool) {
        (self.values, self.all_good)
    }
}

/// `projects/P/global/images/NAME` or `.../images/family/FAMILY`, also as a
/// full `https://www.googleapis.com/compute/v1/` URL, with Compute Engine's
/// own characters in each part: the value goes into a URL path.
fn is_gce_image(image: &str) -> bool {
    let path = image.strip_prefix("https://www.googleapis.com/compute/v1/").unwrap_or(image);
    let Some(rest) = path.strip_prefix("projects/") else { return false };
    // Project ids may be domain-scoped: `example.com:project`.
    let project =
        |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c));
    let name = |n: &str| {
        (1..=63).contains(&n.len())
            && n.starts_with(|c: char| c.is_ascii_lowercase())
            && !n.ends_with('-')
            && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [p, "global", "images", "family", family] => project(p) && name(family),
        [p, "global", "images", image] => project(p) && name(image),
        _ => false,
    }
}

/// A marketplace URN `publisher:offer:sku:version`, or the resource id of a
/// managed image or gallery image (version), as the Azure provider sends them.
fn is_azure_image(image: &str) -> bool {
    let part = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    let urn: Vec<&str> = image.split(':').collect();
    if urn.len() == 4 && urn.iter().all(|p| part(p)) {
        return true;
    }
    let Some(lowered) = arm_segments(image) else { return false };
    match lowered.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["", "subscriptions", _, "resourcegroups", _, "providers", "microsoft.compute", rest @ ..] => {
            matches!(rest, ["images", _] | ["galleries", _, "images", _] | ["galleries", _, "images", _, "versions", _])
        }
        _ => false,
    }
}

/// The segments of an ARM resource id, lowercased (ARM compares them so),
/// when each is made of the characters resource names may hold (resource
/// group names hold parentheses too); `None` otherwise.
fn arm_segments(id: &str) -> Option<Vec<String>> {
    let segment = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-()".contains(c));
    let segments: Vec<&str> = id.split('/').collect();
    segments.iter().skip(1).all(|s| segment(s)).then(|| segments.iter().map(|s| s.to_ascii_lowercase()).collect())
}

/// Boot disks gpufleet accepts, in GB: no GPU image fits in less than 10,
/// and Compute Engine's largest persistent disk is 65,536.
const DISK_GB: std::ops::RangeInclusive<i128> = 10..=65_536;

/// The largest boot disk each cloud takes, in GB (GiB): an EC2 gp3 volume
/// 16,384, an Azure OS disk 4,095, a Compute Engine persistent disk 65,536.
fn boot_disk_limit(cloud: Cloud) -> u32 {
    match cloud {
        Cloud::Aws => 16_384,
        Cloud::Gcp => 65_536,
        Cloud::Azure => 4_095,
    }
}

/// `disk_gb`, `identity` and `ssh_key`, each in its cloud's own syntax.
fn check_node(raw: &RawFleet, context: &str, problems: &mut Problems) -> Option<NodeSettings> {
    let defaults = NodeSettings::default();
    let disk_gb = match &raw.disk_gb {
        None => Some(defaults.disk_gb),
        Some(disk) if DISK_GB.contains(&disk.value) => u32::try_from(disk.value).ok(),
        Some(disk) => {
            problems.error(disk.span.clone(), format!("disk_gb = {} of {context} is out of range", disk.value)).help(
                format!(
                    "a boot disk is {} to {} GB, and at least the size of the image (default {})",
                    DISK_GB.start(),
                    DISK_GB.end(),
                    defaults.disk_gb
                ),
            );
            None
        }
    };
    let mut all_good = true;
    let mut identity = BTreeMap::new();
    let mut gcp_scopes = defaults.gcp_scopes;
    if let Some(raw_identity) = &raw.identity {
        let mut by_cloud = PerCloud::new(problems);
        by_cloud.accept(
            Cloud::Aws,
            raw_identity.aws.as_ref(),
            is_instance_profile,
            "an EC2 instance profile",
            "give the instance profile's name (letters, digits and + = , . @ _ -, at most 128) or its ARN \"arn:aws:iam::123456789012:instance-profile/NAME\"",
        );
        by_cloud.accept(
            Cloud::Gcp,
            raw_identity.gcp.as_ref(),
            is_service_account,
            "a Compute Engine service account email",
            "write it like \"gpu-node@PROJECT.iam.gserviceaccount.com\"",
        );
        by_cloud.accept(
            Cloud::Azure,
            raw_identity.azure.as_ref(),
            is_user_assigned_identity,
            "an Azure user-assigned managed identity id",
            "write /subscriptions/SUB/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/NAME",
        );
        let (accepted, identities_ok) = by_cloud.finish();
        identity = accepted;
        all_good &= identities_ok;
        if let Some(scopes) = &raw_identity.gcp_scopes {
            if raw_identity.gcp.is_none() {
                problems
                    .error(scopes.span.clone(), format!("gcp_scopes of {context} without a gcp service account"))
                    .help("scopes belong to a service account: add `gcp = \"NAME@PROJECT.iam.gserviceaccount.com\"`, or remove gcp_scopes");
                all_good = false;
            }
            if scopes.value.is_empty() {
                problems.error(scopes.span.clone(), "gcp_scopes is empty").help(format!(
                    "list at least one scope, e.g. [\"{DEFAULT_GCP_SCOPE}\"], or remove the key for that default"
                ));
                all_good = false;
            }
            for scope in &scopes.value {
                let valid = scope.value.strip_prefix("https://www.googleapis.com/auth/").is_some_and(|name| {
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                });
                if !valid {
                    problems
                        .error(scope.span.clone(), format!("`{}` is not a Google OAuth scope", scope.value))
                        .help(format!("scopes are URLs like \"{DEFAULT_GCP_SCOPE}\""));
                    all_good = false;
                }
            }
            gcp_scopes = scopes.value.iter().map(|s| s.value.clone()).collect();
        }
    }
    let mut ssh_key = BTreeMap::new();
    if let Some(keys) = &raw.ssh_key {
        if let Some(name) = &keys.aws {
            if is_key_pair_name(&name.value) {
                ssh_key.insert(Cloud::Aws, name.value.clone());
            } else {
                problems
                    .error(name.span.clone(), format!("`{}` is not an EC2 key pair name", name.value))
                    .help("give the name of a key pair of each region (1 to 255 ASCII characters), not the key itself");
                all_good = false;
            }
        }
        for (cloud, key) in [(Cloud::Gcp, &keys.gcp), (Cloud::Azure, &keys.azure)] {
            let Some(key) = key else { continue };
            match check_ssh_public_key(key, &format!("the {cloud} ssh_key of {context}"), problems) {
                Some(key) => _ = ssh_key.insert(cloud, key),
                None => all_good = false,
            }
        }
    }
    all_good.then_some(NodeSettings { disk_gb: disk_gb?, identity, gcp_scopes, ssh_key })
}

/// A `disk_gb` larger than a cloud the fleet may use takes, said where it is written.
fn check_disk_limits(
    disk_gb: Option<&Located<i128>>,
    clouds: &[Cloud],
    context: &str,
    problems: &mut Problems,
) -> Option<()> {
    let Some(disk) = disk_gb else { return Some(()) };
    let too_big: Vec<String> = clouds
        .iter()
        .filter(|cloud| disk.value > i128::from(boot_disk_limit(**cloud)))
        .map(|cloud| format!("{cloud}, whose boot disks take at most {} GB", boot_disk_limit(*cloud)))
        .collect();
    if too_big.is_empty() {
        return Some(());
    }
    problems
        .error(disk.span.clone(), format!("disk_gb = {} of {context} is larger than a boot disk may be", disk.value))
        .help(format!(
            "the fleet may run on {}: lower disk_gb, or leave that cloud out of its image",
            too_big.join(", and on ")
        ));
    None
}

/// An instance profile name (IAM's `[\w+=,.@-]{1,128}`) or its ARN.
fn is_instance_profile(value: &str) -> bool {
    let name =
        |n: &str| (1..=128).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    match value.strip_prefix("arn:") {
        None => name(value),
        Some(rest) => match rest.split(':').collect::<Vec<_>>().as_slice() {
            [partition, "iam", "", account, resource] => {
                partition.starts_with("aws")
                    && account.len() == 12
                    && account.chars().all(|c| c.is_ascii_digit())
                    && resource
                        .strip_prefix("instance-profile/")
                        .and_then(|path| path.rsplit('/').next())
                        .is_some_and(name)
            }
            _ => false,
        },
    }
}

/// `NAME@PROJECT.iam.gserviceaccount.com`, or another Google-managed
/// service account domain (`developer.gserviceaccount.com` of the default one).
fn is_service_account(value: &str) -> bool {
    value.split_once('@').is_some_and(|(name, domain)| {
        !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && domain.ends_with(".gserviceaccount.com")
            && domain.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c))
    })
}

/// `/subscriptions/S/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/NAME`.
fn is_user_assigned_identity(value: &str) -> bool {
    arm_segments(value).is_some_and(|lowered| {
        matches!(
            lowered.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
            [
                "",
                "subscriptions",
                _,
                "resourcegroups",
                _,
                "providers",
                "microsoft.managedidentity",
                "userassignedidentities",
                _
            ]
        )
    })
}

/// EC2 key pair names: 1 to 255 ASCII characters.
fn is_key_pair_name(value: &str) -> bool {
    (1..=255).contains(&value.len()) && value.chars().all(|c| c.is_ascii_graphic() || c == ' ')
}

/// Compute Engine labels are stricter than EC2 tags: lowercase letters,
/// digits, `_` and `-`, at most 63 characters, keys starting with a letter.
fn check_gcp_labels(labels: Option<&Located<Labels>>, context: &str, problems: &mut Problems) -> Option<()> {
    let valid = |s: &str| {
        s.len() <= 63 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    };
    let mut all_good = true;
    for (key, value) in labels.map(|l| l.value.as_slice()).unwrap_or_default() {
        if !(valid(&key.value) && key.value.starts_with(|c: char| c.is_ascii_lowercase())) {
            problems
                .error(key.span.clone(), format!("label key `{}` of {context} is not a valid Google Cloud label key", key.value))
                .help("the fleet may run on Google Cloud, whose label keys are lowercase letters, digits, `_` and `-`, starting with a letter, at most 63 characters");
            all_good = false;
        }
        if !valid(&value.value) {
            problems
                .error(value.span.clone(), format!("label value `{}` of {context} is not a valid Google Cloud label value", value.value))
                .help("the fleet may run on Google Cloud, whose label values are lowercase letters, digits, `_` and `-`, at most 63 characters");
            all_good = false;
        }
    }
    all_good.then_some(())
}

/// Azure tag names may not hold `/` (nor `< > % & \ ?`, which EC2's
/// rules already keep out); values may.
fn check_azure_labels(labels: Option<&Located<Labels>>, context: &str, problems: &mut Problems) -> Option<()> {
    let mut all_good = true;
    for (key, _) in labels.map(|l| l.value.as_slice()).unwrap_or_default() {
        if key.value.contains('/') {
            problems
                .error(
                    key.span.clone(),
                    format!("label key `{}` of {context} is not a valid Azure tag name", key.value),
                )
                .help("the fleet may run on Azure, whose tag names may not contain `/`; use `.` or `-` instead");
            all_good = false;
        }
    }
    all_good.then_some(())
}

fn is_ami_id(id: &str) -> bool {
    id.strip_prefix("ami-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

/// Labels become EC2 tags, so they follow EC2's rules, and must stay clear of
/// the tags gpufleet uses to recognize its own instances.
fn check_labels(labels: &Located<Labels>, context: &str, problems: &mut Problems) -> Option<BTreeMap<String, String>> {
    let mut checked = BTreeMap::new();
    let mut all_good = true;
    if labels.value.len() > MAX_LABELS {
        problems
            .error(
                labels.span.clone(),
                format!("{context} has {} labels; at most {MAX_LABELS} fit", labels.value.len()),
            )
            .help("EC2 allows 50 tags per instance and gpufleet uses 3 of them");
        all_good = false;
    }
    let allowed_char = |c: char| c.is_alphanumeric() || " _.:/=+-@".contains(c);
    for (key, value) in &labels.value {
        let lowered = key.value.to_lowercase();
        let key_problem = if key.value.is_empty() {
            Some(("label keys must not be empty".to_string(), None))
        } else if lowered.starts_with(OWNERSHIP_TAG_PREFIX) {
            Some((
                format!("label `{}` collides with gpufleet's ownership tags", key.value),
                Some(format!(
                    "keys starting with `{OWNERSHIP_TAG_PREFIX}` are reserved for the tags gpufleet uses to recognize its instances"
                )),
            ))
        } else if lowered.starts_with("aws:") {
            Some((
                format!("label `{}` uses the `aws:` prefix, which AWS reserves", key.value),
                Some("AWS refuses user tags starting with `aws:`; drop the prefix".to_string()),
            ))
        } else if key.value.chars().count() > MAX_TAG_KEY_CHARS {
            Some((format!("label key `{}` is longer than {MAX_TAG_KEY_CHARS} characters", key.value), None))
        } else {
            key.value.chars().find(|c| !allowed_char(*c)).map(|bad| {
                (
                    format!(
                        "label key `{}` contains `{}`, which EC2 tags do not allow",
                        key.value,
                        bad.escape_default()
                    ),
                    None,
                )
            })
        };
        if let Some((message, help)) = key_problem {
            let problem = problems.error(key.span.clone(), message);
            problem.help(
                help.unwrap_or_else(|| "tag keys are 1-128 letters, digits, spaces and _ . : / = + - @".to_string()),
            );
            all_good = false;
        }
        if value.value.chars().count() > MAX_TAG_VALUE_CHARS {
            problems.error(
                value.span.clone(),
                format!("label `{}` has a value longer than {MAX_TAG_VALUE_CHARS} characters", key.value),
            );
            all_good = false;
        } else if let Some(bad) = value.value.chars().find(|c| !allowed_char(*c)) {
            problems
                .error(
                    value.span.clone(),
                    format!(
                        "label `{}` has `{}` in its value, which EC2 tags do not allow",
                        key.value,
                        bad.escape_default()
                    ),
                )
                .help("tag values are letters, digits, spaces and _ . : / = + - @");
            all_good = false;
        }
        checked.insert(key.value.clone(), value.value.clone());
    }
    all_good.then_some(checked)
}

/// "8", "1 or 8", "1, 2 or 8".
fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// Up to `most` bytes of the regular file at `path`, opened without
/// following a link and without blocking, so that nothing but a file's own
/// bytes, and never more than asked, is read.
fn read_at_most(path: &Path, most: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = crate::files::open_regular(path, std::fs::File::options().read(true))?;
    let mut bytes = Vec::new();
    file.take(u64::try_from(most).unwrap_or(u64::MAX)).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The OS reason without the "(os error 2)" suffix, which says nothing to a user.
fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}
