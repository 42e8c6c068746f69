//! `gpufleet check PLAN`: the read-only preflight, as a table per fleet or
//! one JSON object. Exits 0 when every fleet can reach `nodes`, 2 when some
//! reach only `min_nodes`, 1 when one cannot reach `min_nodes`.

use super::context::{Connected, load_plan};
use super::{CheckArgs, Exit, Failure};
use crate::apply::HomeFailures;
use crate::apply::check::{CheckReport, FleetCheck, OfferingCheck, Readiness, check};
use crate::model::printable;
use crate::providers::preflight::Finding;
use std::fmt::Write;

pub async fn run(args: &CheckArgs) -> Result<Exit, Failure> {
    let (plan, catalog) = load_plan(&args.plan, &args.target.plan_file, &args.target.state.state_dir)?;
    // A cloud that cannot be connected to is one row of the report, not the end of it.
    let connected = Connected::open_with(&plan, &args.target, HomeFailures::Record).await?;
    let report = check(&plan, &catalog, &connected.clouds).await;
    connected.close().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report_json(&report)).expect("JSON values serialize"));
    } else {
        print!("{}", report_text(&report));
    }
    Ok(match report.readiness() {
        Readiness::Ready => Exit::Ok,
        Readiness::MinNodesOnly => Exit::Changes,
        Readiness::Short => Exit::Error,
    })
}

fn report_json(report: &CheckReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report).expect("a check report serializes");
    value["readiness"] = serde_json::to_value(report.readiness()).expect("readiness serializes");
    value
}

/// `✓`, `✗` or `–` (not checked).
fn mark(finding: &Finding) -> &'static str {
    match finding {
        Finding::Pass { .. } => "✓",
        Finding::Fail { .. } => "✗",
        Finding::Unchecked { .. } => "–",
    }
}

fn label(offering: &OfferingCheck) -> String {
    let p = &offering.placement;
    format!("{} {} {}", p.cloud, p.zone.as_deref().unwrap_or(&p.region), p.instance_type)
}

/// The human report: the clouds, then a table and the problems of each fleet.
pub fn report_text(report: &CheckReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gpufleet check `{}`: {} cloud(s), {} fleet(s); read-only, nothing is created\n",
        report.plan,
        report.clouds.len(),
        report.fleets.len()
    );
    let _ = writeln!(out, "clouds");
    for cloud in &report.clouds {
        match &cloud.problem {
            None => {
                let _ = writeln!(out, "  ✓ {:<6} answered for {} offering(s)", cloud.cloud.as_str(), cloud.offerings);
            }
            Some(problem) => {
                let _ = writeln!(
                    out,
                    "  ✗ {:<6} {}: {}",
                    cloud.cloud.as_str(),
                    printable(&problem.code),
                    printable(first_line(&problem.message))
                );
            }
        }
    }
    for fleet in &report.fleets {
        out.push('\n');
        fleet_text(&mut out, fleet);
    }
    let short = report.fleets.iter().filter(|f| f.readiness == Readiness::Short).count();
    let partial = report.fleets.iter().filter(|f| f.readiness == Readiness::MinNodesOnly).count();
    let _ = writeln!(
        out,
        "\n{}",
        match (short, partial) {
            (0, 0) => "Every fleet can reach its nodes.".to_string(),
            (0, partial) =>
                format!("{partial} fleet(s) can reach min_nodes only; fix the problems above for the rest."),
            (short, _) => format!("{short} fleet(s) cannot reach min_nodes: fix the problems above before applying."),
        }
    );
    out
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// One refusal, and every offering of the fleet that met it.
struct Problem<'r> {
    what: &'static str,
    code: &'r str,
    message: &'r str,
    fix: &'r str,
    at: Vec<&'r OfferingCheck>,
}

/// `aws p5.48xlarge in us-east-1a, us-east-1b` when the offerings share a
/// cloud and a type, else their labels.
fn where_text(at: &[&OfferingCheck]) -> String {
    let first = &at[0].placement;
    if at.iter().all(|o| o.placement.cloud == first.cloud && o.placement.instance_type == first.instance_type) {
        let places: Vec<&str> = at.iter().map(|o| o.placement.zone.as_deref().unwrap_or(&o.placement.region)).collect();
        format!("{} {} in {}", first.cloud, first.instance_type, places.join(", "))
    } else {
        at.iter().map(|o| label(o)).collect::<Vec<_>>().join("; ")
    }
}

fn fleet_text(out: &mut String, fleet: &FleetCheck) {
    let _ = writeln!(
        out,
        "fleet `{}`: {} node(s) of {}×{} (min_nodes {})",
        fleet.fleet, fleet.nodes, fleet.gpus_per_node, fleet.gpu, fleet.min_nodes
    );
    if fleet.offerings.is_empty() {
        let _ = writeln!(out, "  no offering of the catalog is allowed by the plan for this fleet");
    }
    let width = fleet.offerings.iter().map(|o| label(o).chars().count()).max().unwrap_or(0).max("OFFERING".len());
    if !fleet.offerings.is_empty() {
        let _ = writeln!(out, "  {:<width$}  OFFERED  IMAGE  NETWORK  ACCESS  QUOTA", "OFFERING");
    }
    let mut problems: Vec<Problem<'_>> = Vec::new();
    for offering in &fleet.offerings {
        let name = label(offering);
        let Some(f) = &offering.findings else {
            let _ = writeln!(out, "  {name:<width$}  (not asked: {} could not be reached)", offering.placement.cloud);
            continue;
        };
        let quota = match (&f.quota.finding, f.quota.headroom_nodes) {
            (finding, Some(room)) => format!("{} {room}", mark(finding)),
            (finding, None) => mark(finding).to_string(),
        };
        let _ = writeln!(
            out,
            "  {name:<width$}  {:<7}  {:<5}  {:<7}  {:<6}  {quota}",
            mark(&f.offered),
            mark(&f.image),
            mark(&f.network),
            mark(&f.access)
        );
        let checks = [
            ("offered", &f.offered),
            ("image", &f.image),
            ("network", &f.network),
            ("access", &f.access),
            ("quota", &f.quota.finding),
        ];
        for (what, finding) in checks {
            if let Finding::Fail { code, message, fix } = finding {
                let same = |p: &&mut Problem<'_>| (p.what, p.code, p.message, p.fix) == (what, code, message, fix);
                match problems.iter_mut().find(same) {
                    Some(problem) => problem.at.push(offering),
                    None => problems.push(Problem { what, code, message, fix, at: vec![offering] }),
                }
            }
        }
    }
    if !problems.is_empty() {
        let _ = writeln!(out, "  problems:");
        for problem in &problems {
            let _ = writeln!(
                out,
                "    ✗ {}, {}:\n        {}: {}\n        fix: {}",
                problem.what,
                where_text(&problem.at),
                printable(problem.code),
                printable(first_line(problem.message)),
                printable(problem.fix)
            );
        }
    }
    let _ = writeln!(
        out,
        "  {}",
        match fleet.readiness {
            Readiness::Ready => format!("✓ can reach all {} node(s)", fleet.nodes),
            Readiness::MinNodesOnly => format!(
                "~ can reach {} of {} node(s): min_nodes ({}) but not nodes",
                fleet.reachable, fleet.nodes, fleet.min_nodes
            ),
            Readiness::Short => format!(
                "✗ can reach {} of {} node(s), fewer than min_nodes ({})",
                fleet.reachable, fleet.nodes, fleet.min_nodes
            ),
        }
    );
}
