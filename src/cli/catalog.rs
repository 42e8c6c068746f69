//! `gpufleet catalog refresh PLAN`: read from each cloud the plan configures
//! which GPU instance types it sells where, and write the refreshed catalog
//! file that the other commands merge over the built-in one.

use super::context::{Connected, load_plan_with};
use super::{CatalogRefreshArgs, Exit, Failure, failure};
use crate::apply::HomeFailures;
use crate::catalog::{Catalog, CloudRead, CloudSection, RefreshedCatalog};
use crate::model::Cloud;
use futures::future::join_all;
use serde_json::json;

pub async fn refresh(args: &CatalogRefreshArgs) -> Result<Exit, Failure> {
    let out = args.out.clone().unwrap_or_else(|| args.target.plan_file.catalog_file(&args.target.state.state_dir));
    let builtin = Catalog::builtin();
    // The plan may name regions only the last refresh found; a damaged last
    // file is what this run replaces, so it is not in the way.
    let mut known = match RefreshedCatalog::read(&out) {
        Ok(Some(last)) => builtin.with_refreshed(&last),
        Ok(None) | Err(_) => builtin.clone(),
    };
    // Regions no catalog knows yet are what a refresh is for: the plan may name them.
    for (cloud, locations) in named_locations(&args.plan) {
        known = known.declaring(cloud, &locations);
    }
    let (plan, _) = load_plan_with(&args.plan, &args.target.plan_file, known)?;
    let connected = Connected::open_with(&plan, &args.target, HomeFailures::Fail).await?;
    let reads = async {
        // Connected with HomeFailures::Fail: every configured cloud has its home account.
        let homes = plan.providers.clouds().into_iter().filter_map(|cloud| connected.clouds.home(cloud));
        let answers = join_all(homes.map(|provider| provider.read_catalog())).await;
        let reads = answers.into_iter().collect::<Result<Vec<CloudRead>, _>>().map_err(|e| {
            failure(
                format!("cannot read the catalog of {}: {e}", e.cloud),
                "check the provider's configuration and credentials (the reads need e.g. ec2:DescribeInstanceTypes, compute.machineTypes.list, Microsoft.Compute/skus/read); nothing was written",
            )
        })?;
        let now = connected.clock.now().await.map_err(|e| failure(e, "check the clock of the clouds"))?;
        Ok::<_, Failure>((reads, now))
    }
    .await;
    connected.close().await?;
    let (reads, now) = reads?;
    let refreshed = RefreshedCatalog::from_reads(&reads, now, &builtin);
    crate::files::write_atomic(&out, &refreshed.to_bytes()).map_err(|e| {
        failure(
            format!("cannot write the refreshed catalog to {}: {e}", out.display()),
            "check that gpufleet may create files in its directory, or pass --out FILE",
        )
    })?;
    if args.json {
        let clouds: Vec<_> = refreshed.clouds.iter().map(section_json).collect();
        let summary = json!({ "path": out, "refreshed_at": refreshed.refreshed_at, "clouds": clouds });
        println!("{}", serde_json::to_string_pretty(&summary).expect("JSON values serialize"));
    } else {
        println!(
            "gpufleet catalog refresh `{}`: what the clouds sell at {}, read-only\n",
            plan.name,
            refreshed.refreshed_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        for section in &refreshed.clouds {
            println!("{}", section_text(section));
        }
        println!(
            "\nWrote {}: validate, plan, check, apply and rebalance use it over the built-in catalog \
             (prices stay the built-in data's); delete it to go back.",
            out.display()
        );
    }
    Ok(Exit::Ok)
}

/// The locations a plan file's providers name (`regions`, Google Cloud's
/// `zones`), read leniently: whatever is wrong with the file, its
/// validation says next.
fn named_locations(plan: &std::path::Path) -> Vec<(Cloud, Vec<String>)> {
    let text = std::fs::read_to_string(plan).unwrap_or_default();
    let Ok(document) = text.parse::<toml::Table>() else { return Vec::new() };
    let providers = document.get("providers").and_then(toml::Value::as_table);
    Cloud::ALL
        .into_iter()
        .filter_map(|cloud| {
            let provider = providers?.get(cloud.as_str())?.as_table()?;
            let key = if cloud == Cloud::Gcp { "zones" } else { "regions" };
            let names = provider.get(key)?.as_array()?.iter().filter_map(|v| v.as_str().map(str::to_string));
            Some((cloud, names.collect()))
        })
        .collect()
}

/// Offers, of which restricted, and types sold.
fn counts(section: &CloudSection) -> (usize, usize, usize) {
    let restricted = section.offers.iter().filter(|o| o.restricted.is_some()).count();
    let mut types: Vec<&str> = section.offers.iter().map(|o| o.instance_type.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    (section.offers.len(), restricted, types.len())
}

fn section_json(section: &CloudSection) -> serde_json::Value {
    let (offers, restricted, types) = counts(section);
    json!({
        "cloud": section.cloud,
        "account": section.account,
        "regions": section.regions.len(),
        "instance_types": types,
        "offers": offers,
        "restricted": section.offers.iter().filter(|o| o.restricted.is_some())
            .map(|o| json!({ "instance_type": o.instance_type, "region": o.region, "reason": o.restricted }))
            .collect::<Vec<_>>(),
        "restricted_count": restricted,
        "skipped": section.skipped,
    })
}

fn section_text(section: &CloudSection) -> String {
    let (offers, restricted, types) = counts(section);
    let mut line = format!(
        "  {:<6} {}: {} region(s) read, {} GPU type(s) in {} region offer(s)",
        section.cloud.as_str(),
        crate::model::printable(&section.account),
        section.regions.len(),
        types,
        offers
    );
    if restricted > 0 {
        line.push_str(&format!(", {restricted} restricted for the account (never placed)"));
    }
    if !section.skipped.is_empty() {
        let names: Vec<String> =
            section.skipped.iter().take(3).map(|s| format!("{} ({})", s.instance_type, s.gpu)).collect();
        let more = section.skipped.len().saturating_sub(names.len());
        line.push_str(&format!(
            "; {} type(s) skipped, GPU unknown to gpufleet: {}{}",
            section.skipped.len(),
            crate::model::printable(&names.join(", ")),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        ));
    }
    line
}
