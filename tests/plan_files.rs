//! Plan files end to end: the demo plan loads, every kind of mistake is reported
//! with its location and a hint (snapshots of `render_plain`), several mistakes
//! are reported together, malformed input never panics, and the JSON schema
//! describes the format.

use gpufleet::catalog::Catalog;
use gpufleet::model::{Cloud, Placement};
use gpufleet::plan::{self, PlacementPolicy, PlanError, Spread, SpreadBy};
use std::path::{Path, PathBuf};

const FIXTURES: &str = "tests/fixtures/plans";

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(format!("{name}.toml"))
}

fn load_error(name: &str) -> PlanError {
    match plan::load(&fixture(name), &Catalog::builtin(), Default::default()) {
        Ok(_) => panic!("{name}.toml should not validate"),
        Err(error) => error,
    }
}

mod bad_plans {
    use super::load_error;

    /// One snapshot of `render_plain` per fixture, named after it.
    macro_rules! bad_plan {
        ($($name:ident),+ $(,)?) => {$(
            #[test]
            fn $name() {
                insta::assert_snapshot!(load_error(stringify!($name)).render_plain());
            }
        )+};
    }

    bad_plan!(
        syntax_error,
        duplicate_key,
        unknown_key,
        wrong_type,
        missing_required,
        missing_image,
        unknown_gpu,
        min_nodes_greater,
        bad_node_count,
        bad_bounds,
        gpus_per_node_not_offered,
        unknown_placement,
        bad_spread,
        bad_prefer,
        unknown_jurisdiction,
        residency_unsatisfiable,
        bad_price_ceiling,
        unhostable,
        provider_no_regions,
        unknown_region,
        gcp_provider,
        bad_multicloud,
        bad_labels,
        bad_azure_labels,
        missing_startup,
        bad_names,
        bad_offerings,
        bad_shortage_ttl,
        several_problems,
        bad_node_access,
        disk_larger_than_a_cloud_takes,
    );
}

#[test]
fn network_identity_key_and_disk_reach_each_cloud_in_its_own_terms() {
    let plan = plan::load(Path::new("tests/fixtures/node_access.toml"), &Catalog::builtin(), Default::default())
        .unwrap_or_else(|e| panic!("{}", e.render_plain()));
    let trainers = &plan.fleets["trainers"];
    let at = |cloud, region: &str, zone: Option<&str>| Placement {
        cloud,
        region: region.into(),
        zone: zone.map(str::to_string),
        instance_type: "t".into(),
    };
    let aws = plan.launch(trainers, &at(Cloud::Aws, "us-east-1", Some("us-east-1a")));
    assert_eq!(aws.subnet.as_deref(), Some("subnet-0123456789abcdef0"));
    assert_eq!(aws.security_groups, ["sg-0123456789abcdef0", "sg-89abcdef"]);
    assert_eq!((aws.identity.as_deref(), aws.ssh_key.as_deref(), aws.disk_gb), (Some("gpu-node"), Some("ops"), 500));
    let other_zone = plan.launch(trainers, &at(Cloud::Aws, "us-east-1", Some("us-east-1b")));
    assert_eq!(other_zone.subnet, None, "a zone without a subnet launches into the default VPC");
    let gcp = plan.launch(trainers, &at(Cloud::Gcp, "us-central1", Some("us-central1-a")));
    assert_eq!(gcp.network.as_deref(), Some("projects/net-host/global/networks/gpu-net"));
    assert_eq!(gcp.subnet.as_deref(), Some("gpu-us-central1"));
    assert_eq!(gcp.scopes, ["https://www.googleapis.com/auth/devstorage.read_only"]);
    assert!(gcp.ssh_key.as_deref().is_some_and(|k| k.starts_with("ssh-ed25519 ")));
    let azure = plan.launch(trainers, &at(Cloud::Azure, "eastus", None));
    assert!(azure.identity.as_deref().is_some_and(|i| i.ends_with("/userAssignedIdentities/gpu-node")));
    assert_eq!(azure.ssh_key, None, "Azure's key defaults to [providers.azure] ssh_public_key, in the provider");

    let defaults = plan.launch(&plan.fleets["defaults"], &at(Cloud::Aws, "us-east-1", Some("us-east-1c")));
    assert_eq!((defaults.disk_gb, defaults.identity, defaults.ssh_key), (200, None, None));
}

#[test]
fn demo_plan_validates_with_defaults_filled_in() {
    let plan = plan::load(Path::new("plans/demo.toml"), &Catalog::builtin(), Default::default())
        .unwrap_or_else(|e| panic!("{}", e.render_plain()));
    assert_eq!(plan.name, "demo");
    assert_eq!(plan.shortage_ttl, std::time::Duration::from_secs(300));
    assert_eq!(
        plan.providers.aws.as_ref().map(|a| a.regions.clone()),
        Some(vec!["us-east-1".into(), "us-west-2".into()])
    );

    let trainers = &plan.fleets["trainers"];
    assert_eq!((trainers.gpu.as_str(), trainers.gpus_per_node, trainers.nodes, trainers.min_nodes), ("H100", 8, 4, 2));
    assert_eq!(trainers.placement, PlacementPolicy::Spread(Spread { by: SpreadBy::Region, max_skew: 1 }));
    assert_eq!(trainers.residency.as_deref(), Some(&["US".to_string()][..]));
    assert!(trainers.image.contains_key(&Cloud::Aws));
    let startup = trainers.startup.as_ref().expect("startup script read at load");
    assert!(startup.content.starts_with("#!/bin/sh"));

    let inference = &plan.fleets["inference"];
    assert_eq!(
        (inference.placement, inference.min_nodes),
        (PlacementPolicy::Pack, inference.nodes),
        "min_nodes defaults to nodes"
    );
}

#[test]
fn plan_with_several_problems_reports_all_of_them_in_file_order() {
    let error = load_error("several_problems");
    let messages: Vec<&str> = error.diagnostics().iter().map(|d| d.message()).collect();
    for expected in [
        "plan name `Several Problems` is not a valid name",
        "shortage_ttl must be longer than zero",
        "unknown aws region `us-wst-2`",
        "min_nodes (6) is greater than nodes (4)",
        "unknown placement `packed`",
        "label `gpufleet-run` collides with gpufleet's ownership tags",
        "unknown GPU model `L40S`",
        "max_price_per_gpu_hour must be a positive amount of USD, found -1",
        "cannot read startup script `scripts/missing.sh`: No such file or directory",
    ] {
        assert!(messages.contains(&expected), "missing {expected:?} in {messages:#?}");
    }
    let lines: Vec<usize> = error.diagnostics().iter().map(|d| d.line().expect("located")).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "diagnostics in file order: {lines:?}");
    assert_eq!(error.diagnostics().len(), messages.len());
}

#[test]
fn plan_error_renders_through_miette_with_every_problem() {
    let error = load_error("several_problems");
    let mut rendered = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .render_report(&mut rendered, &error)
        .expect("renders");
    for diagnostic in error.diagnostics() {
        assert!(rendered.contains(diagnostic.message()), "{} missing from:\n{rendered}", diagnostic.message());
    }
}

/// A TTL of centuries overflowed the clock when the first shortage was
/// remembered, and apply panicked after its first refused create.
#[test]
fn shortage_ttl_beyond_a_year_is_refused_instead_of_overflowing_at_apply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ttl.toml");
    std::fs::write(
        &path,
        "name = \"ttl\"\nshortage_ttl = \"300000years\"\n\n[providers.aws]\nregions = [\"us-east-1\"]\n",
    )
    .unwrap();
    let error = plan::load(&path, &Catalog::builtin(), Default::default()).unwrap_err();
    let rendered = error.render_plain();
    assert!(rendered.contains("ttl.toml:2:") && rendered.contains("longer than a year"), "{rendered}");
    std::fs::write(&path, "name = \"ttl\"\nshortage_ttl = \"365days\"\n\n[providers.aws]\nregions = [\"us-east-1\"]\n")
        .unwrap();
    assert!(plan::load(&path, &Catalog::builtin(), Default::default()).is_ok());
}

#[test]
fn unreadable_plan_file_is_a_plan_error() {
    let error =
        plan::load(Path::new("tests/fixtures/plans/no-such-plan.toml"), &Catalog::builtin(), Default::default())
            .unwrap_err();
    assert_eq!(
        error.render_plain(),
        "tests/fixtures/plans/no-such-plan.toml: error: cannot read the plan file: No such file or directory (os error 2)\n"
    );
    assert!(error.diagnostics()[0].location().is_none());
}

#[test]
fn plan_overrides_change_the_catalog_that_fleets_are_checked_against() {
    let text = r#"
        name = "negotiated"
        [providers.aws]
        regions = ["us-east-1"]
        [fleets.trainers]
        gpu = "H100"
        gpus_per_node = 8
        nodes = 2
        max_price_per_gpu_hour = 5.0
        image = { aws = "ami-0c7217cdde317cfec" }
        [[offerings]]
        cloud = "aws"
        instance_type = "p5.48xlarge"
        region = "us-east-1"
        price_per_hour = 38.0
    "#;
    let plan = plan::parse("negotiated.toml", text, Path::new("."), &Catalog::builtin())
        .unwrap_or_else(|e| panic!("{}", e.render_plain()));
    assert_eq!(plan.offerings.len(), 1);
    assert_eq!(plan.offerings[0].price_per_hour, Some(38.0));
}

#[test]
fn plan_json_schema_is_draft_2020_12_and_names_every_key() {
    let schema = plan::json_schema();
    let text = serde_json::to_string(&schema).expect("serializable");
    let reparsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(reparsed["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let properties = reparsed["properties"].as_object().expect("top-level properties");
    let mut keys: Vec<&str> = properties.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["fleets", "name", "offerings", "providers", "rebalance", "shortage_ttl"]);
    for key in [
        "regions",
        "endpoint",
        "profile",
        "gpu",
        "gpus_per_node",
        "nodes",
        "min_nodes",
        "placement",
        "prefer",
        "residency",
        "max_price_per_gpu_hour",
        "image",
        "startup",
        "labels",
        "instance_type",
        "region",
        "zone",
        "jurisdiction",
        "price_per_hour",
        "every",
        "max_disruption",
        "move_back_after",
        "min_gain",
        "drain",
        "drain_timeout",
    ] {
        assert!(text.contains(&format!("\"{key}\"")), "schema does not mention {key}");
    }
    assert!(!text.contains("\"null\""), "TOML has no null");
    assert!(text.contains("\"spread\"") && text.contains("\"pack\""));
}

mod plan_fuzz {
    use super::*;
    use proptest::prelude::*;

    fn demo_text() -> String {
        std::fs::read_to_string("plans/demo.toml").expect("demo plan")
    }

    fn parse_bytes(bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        // Ok or Err are both fine; a panic fails the test.
        let _ = plan::parse("fuzz.toml", &text, Path::new("plans"), &Catalog::builtin()).map_err(|e| e.render_plain());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            parse_bytes(&bytes);
        }

        #[test]
        fn mutated_demo_plans_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..8)
        ) {
            let mut bytes = demo_text().into_bytes();
            for (at, kind, byte) in edits {
                if bytes.is_empty() { break; }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] = byte,
                    1 => { bytes.remove(i); }
                    2 => bytes.insert(i, byte),
                    _ => { let tail = bytes.split_off(i); bytes.extend(tail.iter().rev()); }
                }
            }
            parse_bytes(&bytes);
        }

        #[test]
        fn token_soup_never_panics(tokens in proptest::collection::vec(prop::sample::select(vec![
            "name", "=", "\"x\"", "[", "]", "[[", "]]", "fleets", ".", "providers", "aws", "regions",
            "{", "}", ",", "\n", "gpu", "nodes", "-1", "1e400", "nan", "inf", "99999999999999999999",
            "\"é\"", "labels", "offerings", "prefer", "\"aws:\"", "#", "'''", "\"\"\"",
        ]), 0..60)) {
            parse_bytes(tokens.join(" ").as_bytes());
        }
    }
}
