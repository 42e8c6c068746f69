//! Tests of the compiled-in catalog data and of plan overrides.

use super::*;
use crate::model::OfferingOverride;

/// The instance types the rest of gpufleet (docs, demo plans, simulator
/// scenarios) may rely on, with the GPU model and node shape each must have.
const REQUIRED_TYPES: &[(Cloud, &str, &str, u32)] = &[
    (Cloud::Aws, "p5.48xlarge", "H100", 8),
    (Cloud::Aws, "p5en.48xlarge", "H200", 8),
    (Cloud::Aws, "p4d.24xlarge", "A100-40GB", 8),
    (Cloud::Aws, "p4de.24xlarge", "A100-80GB", 8),
    (Cloud::Aws, "p6-b200.48xlarge", "B200", 8),
    (Cloud::Aws, "g6.48xlarge", "L4", 8),
    (Cloud::Aws, "g5.48xlarge", "A10G", 8),
    (Cloud::Gcp, "a3-highgpu-8g", "H100", 8),
    (Cloud::Gcp, "a3-megagpu-8g", "H100", 8),
    (Cloud::Gcp, "a3-ultragpu-8g", "H200", 8),
    (Cloud::Gcp, "a4-highgpu-8g", "B200", 8),
    (Cloud::Gcp, "a2-highgpu-8g", "A100-40GB", 8),
    (Cloud::Gcp, "a2-ultragpu-8g", "A100-80GB", 8),
    (Cloud::Gcp, "g2-standard-96", "L4", 8),
    (Cloud::Azure, "Standard_ND96isr_H100_v5", "H100", 8),
    (Cloud::Azure, "Standard_ND96isr_H200_v5", "H200", 8),
    (Cloud::Azure, "Standard_ND96asr_v4", "A100-40GB", 8),
    (Cloud::Azure, "Standard_ND96amsr_A100_v4", "A100-80GB", 8),
    (Cloud::Azure, "Standard_NC40ads_H100_v5", "H100-NVL", 1),
    (Cloud::Azure, "Standard_NC24ads_A100_v4", "A100-80GB", 1),
];

/// The GPU model names documented at the top of catalog.toml; plans match them exactly.
const DOCUMENTED_GPU_MODELS: &[&str] = &["A100-40GB", "A100-80GB", "A10G", "B200", "H100", "H100-NVL", "H200", "L4"];

#[test]
fn builtin_catalog_parses_and_is_consistent() {
    let catalog = Catalog::parse(BUILTIN).expect("built-in catalog");
    assert!(!catalog.as_of.is_empty());
    assert!(!catalog.sources.is_empty());
}

#[test]
fn builtin_catalog_has_every_required_type_with_its_shape() {
    let catalog = Catalog::builtin();
    for &(cloud, name, gpu, gpus) in REQUIRED_TYPES {
        let it =
            catalog.instance_type(cloud, name).unwrap_or_else(|| panic!("{cloud} {name} missing from the catalog"));
        assert_eq!((it.gpu.as_str(), it.gpus), (gpu, gpus), "{cloud} {name}");
        assert!(it.vcpus > 0 && it.gpu_memory_gib > 0, "{cloud} {name} lacks vCPUs or GPU memory");
    }
}

#[test]
fn every_builtin_type_is_sold_somewhere_and_every_region_has_a_jurisdiction() {
    let catalog = Catalog::builtin();
    for it in &catalog.instance_types {
        assert!(!it.offers.is_empty(), "{} {} has no region", it.cloud, it.name);
    }
    for region in &catalog.regions {
        assert!(!region.jurisdiction.is_empty(), "{} {} has no jurisdiction", region.cloud, region.name);
        assert!(
            !region.cloud.places_by_zone() || !region.zones.is_empty(),
            "{} {}: zone-placed clouds list their zones",
            region.cloud,
            region.name
        );
    }
}

#[test]
fn builtin_gpu_models_are_the_documented_names() {
    assert_eq!(Catalog::builtin().gpu_models(), DOCUMENTED_GPU_MODELS);
}

#[test]
fn builtin_catalog_covers_us_eu_uk_and_jp_on_every_cloud_with_zones() {
    let catalog = Catalog::builtin();
    for cloud in [Cloud::Aws, Cloud::Gcp] {
        let jurisdictions: Vec<&str> = catalog.regions_of(cloud).map(|r| r.jurisdiction.as_str()).collect();
        for wanted in ["US", "EU", "UK", "JP"] {
            assert!(jurisdictions.contains(&wanted), "{cloud} has no {wanted} region");
        }
    }
}

#[test]
fn gcp_and_aws_offerings_are_per_zone_and_azure_offerings_per_region() {
    let offerings = Catalog::builtin().offerings();
    assert!(offerings.iter().filter(|o| o.cloud != Cloud::Azure).all(|o| o.zone.is_some()));
    assert!(offerings.iter().filter(|o| o.cloud == Cloud::Azure).all(|o| o.zone.is_none()));
    let p5_us_east: Vec<_> =
        offerings.iter().filter(|o| o.instance_type == "p5.48xlarge" && o.region == "us-east-1").collect();
    let zones: Vec<_> = p5_us_east.iter().filter_map(|o| o.zone.as_deref()).collect();
    assert_eq!(zones, ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1f"]);
    let p5_us_east = p5_us_east[0];
    assert_eq!(p5_us_east.price_per_gpu_hour(), Some(6.88));
}

#[test]
fn catalog_rejects_offers_in_undeclared_zones() {
    let text = r#"
        as_of = "2026-01-01"
        sources = []
        [[region]]
        cloud = "gcp"
        name = "us-central1"
        jurisdiction = "US"
        zones = ["us-central1-a"]
        [[instance_type]]
        cloud = "gcp"
        name = "a3-highgpu-8g"
        gpu = "H100"
        gpus = 8
        gpu_memory_gib = 80
        vcpus = 208
        offers = [{ region = "us-central1", zones = ["us-central1-z"] }]
    "#;
    assert!(matches!(Catalog::parse(text), Err(CatalogError::UnknownZone { .. })));
}

fn entry(cloud: Cloud, instance_type: &str, region: &str) -> OfferingOverride {
    OfferingOverride {
        cloud,
        instance_type: instance_type.to_string(),
        region: region.to_string(),
        zone: None,
        gpu: None,
        gpus_per_node: None,
        jurisdiction: None,
        price_per_hour: None,
    }
}

fn price_of(catalog: &Catalog, cloud: Cloud, instance_type: &str, location: &str) -> Option<f64> {
    catalog
        .offerings()
        .into_iter()
        .find(|o| {
            o.cloud == cloud
                && o.instance_type == instance_type
                && (o.zone.as_deref() == Some(location) || (o.region == location && o.cloud != Cloud::Gcp))
        })
        .and_then(|o| o.price_per_hour)
}

#[test]
fn override_replaces_the_price_of_a_known_offer() {
    let base = Catalog::builtin();
    let cheaper = OfferingOverride { price_per_hour: Some(40.0), ..entry(Cloud::Aws, "p5.48xlarge", "us-east-1") };
    let catalog = base.with_overrides(&[cheaper]).unwrap();
    assert_eq!(price_of(&catalog, Cloud::Aws, "p5.48xlarge", "us-east-1"), Some(40.0));
    assert_eq!(price_of(&catalog, Cloud::Aws, "p5.48xlarge", "us-west-2"), Some(55.04), "other regions keep theirs");
    assert_eq!(catalog.offerings().len(), base.offerings().len(), "no offering added");
}

#[test]
fn override_adds_a_known_type_in_a_known_region() {
    let catalog = Catalog::builtin()
        .with_overrides(&[OfferingOverride {
            price_per_hour: Some(120.0),
            ..entry(Cloud::Aws, "p6-b200.48xlarge", "eu-west-2")
        }])
        .unwrap();
    let added = catalog
        .offerings()
        .into_iter()
        .find(|o| o.instance_type == "p6-b200.48xlarge" && o.region == "eu-west-2")
        .expect("added offering");
    assert_eq!((added.jurisdiction.as_str(), added.price_per_hour), ("UK", Some(120.0)));
}

#[test]
fn override_in_a_region_the_catalog_lacks_needs_a_jurisdiction() {
    let base = Catalog::builtin();
    let without = entry(Cloud::Aws, "p5.48xlarge", "eu-central-2");
    let errors = base.with_overrides(std::slice::from_ref(&without)).unwrap_err();
    assert_eq!(
        errors,
        vec![OverrideError {
            index: 0,
            problem: OverrideProblem::NewRegionNeedsJurisdiction { cloud: Cloud::Aws, region: "eu-central-2".into() }
        }]
    );

    let with = OfferingOverride { jurisdiction: Some("CH".into()), ..without };
    let catalog = base.with_overrides(&[with]).unwrap();
    assert_eq!(catalog.region(Cloud::Aws, "eu-central-2").map(|r| r.jurisdiction.as_str()), Some("CH"));
    assert!(catalog.offerings().iter().any(|o| o.region == "eu-central-2" && o.price_per_hour.is_none()));
}

#[test]
fn override_of_an_unknown_type_needs_gpu_and_gpus_per_node() {
    let base = Catalog::builtin();
    let bare = entry(Cloud::Aws, "p7.48xlarge", "us-east-1");
    let errors = base.with_overrides(std::slice::from_ref(&bare)).unwrap_err();
    assert!(matches!(errors[0].problem, OverrideProblem::NewTypeNeedsShape { .. }));

    let described =
        OfferingOverride { gpu: Some("B300".into()), gpus_per_node: Some(8), price_per_hour: Some(150.0), ..bare };
    let catalog = base.with_overrides(&[described]).unwrap();
    let added = catalog.instance_type(Cloud::Aws, "p7.48xlarge").expect("added type");
    assert_eq!((added.gpu.as_str(), added.gpus), ("B300", 8));
    assert!(catalog.gpu_models().contains(&"B300".to_string()));
}

#[test]
fn override_contradicting_the_catalog_is_refused_and_all_problems_are_reported() {
    let wrong_gpu = OfferingOverride { gpu: Some("H200".into()), ..entry(Cloud::Aws, "p5.48xlarge", "us-east-1") };
    let wrong_jurisdiction =
        OfferingOverride { jurisdiction: Some("EU".into()), ..entry(Cloud::Aws, "p5.48xlarge", "us-east-1") };
    let zone_on_azure =
        OfferingOverride { zone: Some("eastus-1".into()), ..entry(Cloud::Azure, "Standard_ND96isr_H100_v5", "eastus") };
    let errors = Catalog::builtin().with_overrides(&[wrong_gpu, wrong_jurisdiction, zone_on_azure]).unwrap_err();
    let indexes: Vec<usize> = errors.iter().map(|e| e.index).collect();
    assert_eq!(indexes, [0, 1, 2]);
    assert!(matches!(errors[0].problem, OverrideProblem::ShapeMismatch { field: "GPU model", .. }));
    assert!(matches!(errors[1].problem, OverrideProblem::JurisdictionMismatch { .. }));
    assert!(matches!(errors[2].problem, OverrideProblem::ZoneOnRegionalCloud { .. }));
}

#[test]
fn zone_override_prices_only_that_zone() {
    let base = Catalog::builtin();
    let one_zone = OfferingOverride {
        zone: Some("us-central1-a".into()),
        price_per_hour: Some(25.0),
        ..entry(Cloud::Gcp, "a2-highgpu-8g", "us-central1")
    };
    let catalog = base.with_overrides(&[one_zone]).unwrap();
    assert_eq!(price_of(&catalog, Cloud::Gcp, "a2-highgpu-8g", "us-central1-a"), Some(25.0));
    assert_eq!(price_of(&catalog, Cloud::Gcp, "a2-highgpu-8g", "us-central1-b"), Some(29.38708));
    assert_eq!(catalog.offerings().len(), base.offerings().len(), "the zone moved, it was not duplicated");

    let foreign_zone =
        OfferingOverride { zone: Some("us-east1-b".into()), ..entry(Cloud::Gcp, "a2-highgpu-8g", "us-central1") };
    let errors = base.with_overrides(&[foreign_zone]).unwrap_err();
    assert!(matches!(errors[0].problem, OverrideProblem::ZoneOutsideRegion { .. }));
}

#[test]
fn every_builtin_azure_size_has_a_vcpu_family() {
    let catalog = Catalog::builtin();
    for size in catalog.instance_types.iter().filter(|t| t.cloud == Cloud::Azure) {
        assert!(azure_vcpu_family(&size.name).is_some(), "{} has no vCPU family", size.name);
    }
    assert_eq!(azure_vcpu_family("standard_nd96isr_h100_v5"), Some("standardNDSH100v5Family"));
    assert_eq!(azure_vcpu_family("Standard_NC24ads_A100_v4"), Some("StandardNCADSA100v4Family"));
    assert_eq!(azure_vcpu_family("Standard_D2s_v5"), None);
}

#[test]
fn every_aws_gpu_type_counts_against_a_known_vcpu_quota() {
    let catalog = Catalog::builtin();
    for it in catalog.instance_types.iter().filter(|t| t.cloud == Cloud::Aws) {
        assert!(ec2_vcpu_quota(&it.name).is_some(), "{} has no vCPU quota", it.name);
    }
    assert_eq!(ec2_vcpu_quota("p5en.48xlarge").map(|q| q.code), Some("L-417A185B"));
    assert_eq!(ec2_vcpu_quota("p6-b200.48xlarge").map(|q| q.code), Some("L-417A185B"));
    assert_eq!(ec2_vcpu_quota("vt1.24xlarge").map(|q| q.code), Some("L-DB2E81BA"));
    assert_eq!(ec2_vcpu_quota("m7i.large").map(|q| q.code), Some("L-1216C47A"));
    assert_eq!(ec2_vcpu_quota("dl1.24xlarge"), None, "DL has a quota of its own");
    assert_eq!(ec2_vcpu_quota_by_code("L-DB2E81BA").map(|q| q.families), Some(&["g", "vt"][..]));
}

mod refreshed {
    use super::super::mapping::{
        GPU_MODELS, ReportedGpu, ec2_gpu_name, gce_accelerator_type, gpu_model, jurisdiction_of,
    };
    use super::super::*;
    use chrono::{TimeZone, Utc};
    use std::collections::{BTreeMap, BTreeSet};

    fn ec2(name: &str, memory_mib: u32) -> ReportedGpu {
        ReportedGpu::Ec2 { manufacturer: "NVIDIA".into(), name: name.into(), memory_mib }
    }

    #[test]
    fn the_clouds_gpu_names_map_to_the_catalogs() {
        let named = |gpu: ReportedGpu| gpu_model(&gpu).map(|m| m.name);
        assert_eq!(named(ec2("H100", 81920)), Some("H100"));
        assert_eq!(named(ec2("A100", 40960)), Some("A100-40GB"));
        assert_eq!(named(ec2("A100", 81920)), Some("A100-80GB"));
        assert_eq!(named(ec2("L4", 22888)), Some("L4"));
        assert_eq!(named(ec2("L40S", 45776)), None, "a GPU gpufleet does not know is not guessed");
        let amd = ReportedGpu::Ec2 { manufacturer: "AMD".into(), name: "H100".into(), memory_mib: 81920 };
        assert_eq!(named(amd), None);
        let gce = |name: &str| named(ReportedGpu::Gce { accelerator_type: name.into() });
        assert_eq!(gce("nvidia-h100-80gb"), Some("H100"));
        assert_eq!(gce("nvidia-h100-mega-80gb"), Some("H100"));
        assert_eq!(gce("nvidia-tesla-a100"), Some("A100-40GB"));
        assert_eq!(gce("nvidia-a100-80gb"), Some("A100-80GB"));
        assert_eq!(gce("nvidia-tesla-t4"), None);
        let azure = |family: &str| named(ReportedGpu::Azure { family: family.into() });
        assert_eq!(azure("standardNDSH100v5Family"), Some("H100"));
        assert_eq!(azure("STANDARDNDSH100V5FAMILY"), Some("H100"), "families compare case-insensitively");
        assert_eq!(azure("standardNCadsH100v5Family"), Some("H100-NVL"));
        assert_eq!(azure("standardNVADSA10v5Family"), None);
    }

    /// What the simulator answers with maps back to the built-in type's GPU,
    /// for every type of the built-in catalog: the two directions agree.
    #[test]
    fn every_builtin_type_round_trips_through_its_clouds_gpu_name() {
        let catalog = Catalog::builtin();
        for it in &catalog.instance_types {
            let reported = match it.cloud {
                Cloud::Aws => ec2(ec2_gpu_name(&it.gpu).unwrap(), it.gpu_memory_gib * 1024),
                Cloud::Gcp => {
                    ReportedGpu::Gce { accelerator_type: gce_accelerator_type(&it.name, &it.gpu).unwrap().to_string() }
                }
                Cloud::Azure => ReportedGpu::Azure { family: azure_vcpu_family(&it.name).unwrap().to_string() },
            };
            assert_eq!(gpu_model(&reported).map(|m| m.name), Some(it.gpu.as_str()), "{} {}", it.cloud, it.name);
        }
        let documented: BTreeSet<&str> = GPU_MODELS.iter().map(|m| m.name).collect();
        assert!(catalog.gpu_models().iter().all(|g| documented.contains(g.as_str())));
    }

    #[test]
    fn jurisdictions_come_from_the_region_names_and_unknown_names_get_none() {
        assert_eq!(jurisdiction_of(Cloud::Azure, "westeurope"), Some("EU"));
        assert_eq!(jurisdiction_of(Cloud::Azure, "northeurope"), Some("EU"));
        assert_eq!(jurisdiction_of(Cloud::Azure, "uksouth"), Some("UK"));
        assert_eq!(jurisdiction_of(Cloud::Azure, "westus3"), Some("US"));
        assert_eq!(jurisdiction_of(Cloud::Aws, "eu-west-2"), Some("UK"));
        assert_eq!(jurisdiction_of(Cloud::Aws, "eu-central-2"), Some("CH"));
        assert_eq!(jurisdiction_of(Cloud::Aws, "eu-south-1"), Some("EU"));
        assert_eq!(jurisdiction_of(Cloud::Gcp, "europe-west9"), Some("EU"));
        assert_eq!(jurisdiction_of(Cloud::Gcp, "europe-west2"), Some("UK"));
        assert_eq!(jurisdiction_of(Cloud::Gcp, "mars-north1"), None);
        // The table agrees with the built-in data wherever both know a region.
        for region in &Catalog::builtin().regions {
            assert_eq!(
                jurisdiction_of(region.cloud, &region.name),
                Some(region.jurisdiction.as_str()),
                "{} {}",
                region.cloud,
                region.name
            );
        }
    }

    fn sighting(region: &str, zones: &[&str], instance_type: &str, gpu: ReportedGpu, gpus: u32) -> Sighting {
        Sighting {
            region: region.into(),
            zones: zones.iter().map(|z| z.to_string()).collect(),
            instance_type: instance_type.into(),
            gpu,
            gpus,
            gpu_memory_gib: None,
            vcpus: 96,
            restriction: None,
        }
    }

    fn regions(list: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        list.iter().map(|(r, zones)| (r.to_string(), zones.iter().map(|z| z.to_string()).collect())).collect()
    }

    fn refreshed() -> RefreshedCatalog {
        let azure = |family: &str| ReportedGpu::Azure { family: family.into() };
        let mut restricted =
            sighting("northeurope", &[], "Standard_ND96isr_H100_v5", azure("standardNDSH100v5Family"), 8);
        restricted.restriction = Some("NotAvailableForSubscription".into());
        let reads = vec![
            CloudRead {
                cloud: Cloud::Aws,
                account: "profile default".into(),
                regions: regions(&[("eu-west-1", &["eu-west-1a", "eu-west-1b"]), ("mars-east-1", &["mars-east-1a"])]),
                sightings: vec![
                    sighting("eu-west-1", &["eu-west-1b"], "p5.48xlarge", ec2("H100", 81920), 8),
                    sighting("mars-east-1", &["mars-east-1a"], "p5.48xlarge", ec2("H100", 81920), 8),
                    sighting("eu-west-1", &["eu-west-1a"], "g6e.48xlarge", ec2("L40S", 45776), 8),
                ],
            },
            CloudRead {
                cloud: Cloud::Azure,
                account: "subscription s".into(),
                regions: regions(&[("eastus", &[]), ("westeurope", &[]), ("northeurope", &[])]),
                sightings: vec![
                    sighting("westeurope", &[], "Standard_ND96isr_H100_v5", azure("standardNDSH100v5Family"), 8),
                    restricted,
                ],
            },
        ];
        RefreshedCatalog::from_reads(&reads, Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap(), &Catalog::builtin())
    }

    #[test]
    fn a_refresh_replaces_the_offers_of_the_regions_it_read_and_keeps_prices_and_the_rest() {
        let file = refreshed();
        let aws = &file.clouds[0];
        assert_eq!(
            aws.skipped,
            vec![SkippedType { instance_type: "g6e.48xlarge".into(), gpu: "NVIDIA L40S 45776 MiB".into() }]
        );
        assert_eq!(aws.regions[1].jurisdiction, None, "mars-east-1 is no region name gpufleet knows");
        let builtin = Catalog::builtin();
        let merged = builtin.with_refreshed(&file);
        merged.check().unwrap();
        let offerings = merged.offerings();
        let at = |cloud: Cloud, place: &str, it: &str| {
            offerings
                .iter()
                .find(|o| o.cloud == cloud && o.instance_type == it && o.zone.as_deref().unwrap_or(&o.region) == place)
        };
        // Found by the refresh, in a known region: placeable in the zone that sells it, price unknown.
        let p5 = at(Cloud::Aws, "eu-west-1b", "p5.48xlarge").expect("p5.48xlarge in eu-west-1b");
        assert_eq!((p5.jurisdiction.as_str(), p5.price_per_hour), ("EU", None));
        assert!(at(Cloud::Aws, "eu-west-1a", "p5.48xlarge").is_none());
        // What the built-in data sold in eu-west-1 and the cloud did not report is gone there.
        assert!(at(Cloud::Aws, "eu-west-1a", "g5.48xlarge").is_none());
        // A region the refresh did not read keeps the built-in offers and prices.
        let east = at(Cloud::Aws, "us-east-1a", "p5.48xlarge").expect("us-east-1 kept");
        assert_eq!(east.price_per_hour, Some(55.04));
        // A new region of unknown jurisdiction: placeable, but no residency names it.
        let mars = at(Cloud::Aws, "mars-east-1a", "p5.48xlarge").expect("mars-east-1a");
        assert_eq!(mars.jurisdiction, UNKNOWN_JURISDICTION);
        assert!(!merged.jurisdictions().contains(&UNKNOWN_JURISDICTION.to_string()));
        // Azure: westeurope is new (EU); the restricted size is not placeable; eastus
        // was read and sold nothing, so its built-in offers are gone.
        let west = at(Cloud::Azure, "westeurope", "Standard_ND96isr_H100_v5").expect("westeurope");
        assert_eq!((west.jurisdiction.as_str(), west.price_per_hour), ("EU", None));
        assert!(at(Cloud::Azure, "northeurope", "Standard_ND96isr_H100_v5").is_none());
        assert!(at(Cloud::Azure, "eastus", "Standard_ND96isr_H100_v5").is_none());
        assert!(merged.region(Cloud::Azure, "northeurope").is_some(), "a restricted region is still a known region");
        // GCP was not read: untouched.
        assert_eq!(merged.offerings_of(|t| t.cloud == Cloud::Gcp), builtin.offerings_of(|t| t.cloud == Cloud::Gcp));
    }

    #[test]
    fn a_refreshed_file_reads_back_and_a_damaged_one_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refreshed.json");
        assert!(RefreshedCatalog::read(&path).unwrap().is_none(), "no file: the built-in catalog");
        let elsewhere = dir.path().join("catalog").join("refreshed.json");
        assert!(RefreshedCatalog::read(&elsewhere).unwrap().is_none());
        assert!(!dir.path().join("catalog").exists(), "looking for the file created its directory");
        let file = refreshed();
        let bytes = file.to_bytes();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(RefreshedCatalog::read(&path).unwrap(), Some(file));
        let text = String::from_utf8(bytes.clone()).unwrap();
        // The offer's zone (listed after the region's own zones) outside its region.
        let last = text.rfind("\"eu-west-1b\"").unwrap();
        let zone_outside = format!("{}\"eu-west-1z\"{}", &text[..last], &text[last + "\"eu-west-1b\"".len()..]);
        let damaged: Vec<(String, &str)> = vec![
            (text[..text.len() / 2].to_string(), "EOF while parsing"),
            ("garbage".into(), "expected value"),
            ("{}".into(), "missing field"),
            (text.replace("\"gpus\": 8", "\"gpus\": -8"), "gpus"),
            (text.replace("\"gpus\": 8", "\"gpus\": 0"), "needs an instance type"),
            (text.replace("gpufleet-catalog", "something-else"), "kind is `something-else`"),
            (text.replace("\"format_version\": 1", "\"format_version\": 9"), "format_version is 9"),
            (text.replacen("\"region\": \"eu-west-1\"", "\"region\": \"eu-west-9\"", 1), "not among the regions read"),
            (zone_outside, "zone `eu-west-1z`"),
            (text.replace("\"jurisdiction\": \"EU\"", "\"jurisdiction\": \"Europe\""), "not a jurisdiction code"),
            (text.replace("\"account\"", "\"acount\""), "unknown field"),
        ];
        for (bytes, expected) in damaged {
            std::fs::write(&path, &bytes).unwrap();
            let err = RefreshedCatalog::read(&path).expect_err(expected);
            let message = err.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains(expected), "{expected:?} not in {message}");
        }
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        assert!(RefreshedCatalog::read(&path).is_err());
    }

    /// What a cloud may answer that the file's reader refuses (a size listed
    /// twice in a location, a zone or region the listing did not name, no
    /// GPUs) used to be written as it came, and the next plan failed on it.
    #[test]
    fn whatever_the_clouds_answer_the_file_written_reads_back() {
        let azure = ReportedGpu::Azure { family: "standardNDSH100v5Family".into() };
        let mut restricted = sighting("westeurope", &[], "Standard_ND96isr_H100_v5", azure.clone(), 8);
        restricted.restriction = Some("NotAvailableForSubscription".into());
        let reads = vec![
            CloudRead {
                cloud: Cloud::Azure,
                account: "subscription s".into(),
                regions: regions(&[("westeurope", &[]), ("", &[])]),
                sightings: vec![
                    restricted,
                    sighting("westeurope", &["1"], "Standard_ND96isr_H100_v5", azure.clone(), 8),
                    sighting("", &[], "Standard_ND96isr_H100_v5", azure.clone(), 8),
                    sighting("mars", &[], "Standard_ND96isr_H100_v5", azure.clone(), 8),
                    sighting("westeurope", &[], "Standard_ND96asr_v4", azure, 0),
                ],
            },
            CloudRead {
                cloud: Cloud::Gcp,
                account: "project p".into(),
                regions: regions(&[("us-central1", &["us-central1-a"])]),
                sightings: vec![sighting(
                    "us-central1",
                    &["us-central1-a", "us-central1-z"],
                    "a3-highgpu-8g",
                    ReportedGpu::Gce { accelerator_type: "nvidia-h100-80gb".into() },
                    8,
                )],
            },
        ];
        let file = RefreshedCatalog::from_reads(
            &reads,
            Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap(),
            &Catalog::builtin(),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refreshed.json");
        std::fs::write(&path, file.to_bytes()).unwrap();
        let back = RefreshedCatalog::read(&path).unwrap().unwrap();
        let azure = &back.clouds[0];
        assert_eq!(azure.offers.len(), 1, "{:?}", azure.offers);
        assert_eq!(azure.offers[0].restricted, None, "listed once unrestricted: usable there");
        assert_eq!(back.clouds[1].offers[0].zones, ["us-central1-a"]);
    }

    #[test]
    fn declaring_the_regions_a_plan_names_adds_only_what_is_missing() {
        let builtin = Catalog::builtin();
        let zones = ["europe-west9-a".to_string(), "us-central1-z".to_string(), "nozone".to_string()];
        let declared = builtin.declaring(Cloud::Gcp, &zones).declaring(Cloud::Azure, &["marscentral".to_string()]);
        let paris = declared.region(Cloud::Gcp, "europe-west9").unwrap();
        assert_eq!((paris.jurisdiction.as_str(), paris.zones.as_slice()), ("EU", &["europe-west9-a".to_string()][..]));
        assert!(declared.region(Cloud::Gcp, "us-central1").unwrap().zones.contains(&"us-central1-z".to_string()));
        assert_eq!(declared.region(Cloud::Azure, "marscentral").unwrap().jurisdiction, UNKNOWN_JURISDICTION);
        assert_eq!(declared.offerings(), builtin.offerings(), "declared regions sell nothing");
        assert_eq!(declared.regions.len(), builtin.regions.len() + 2);
    }
}
