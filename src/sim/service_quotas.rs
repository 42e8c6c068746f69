//! AWS Service Quotas on the wire (awsJson1_1: `POST /` with
//! `X-Amz-Target: ServiceQuotasV20190624.<Operation>` and a JSON body), for
//! EC2's running On-Demand vCPU quotas: `GetServiceQuota` and
//! `ListServiceQuotas`, shaped as botocore's `service-quotas/2019-06-24` model.
//!
//! Values come from the scenario's `[[quota]]` entries of cloud "aws". A
//! quota the scenario does not set has no applied value, as for many quotas
//! of a real account: `GetServiceQuota` answers `NoSuchResourceException`
//! and `ListServiceQuotas` leaves it out; launches are then not limited.

use super::faults::{CredentialTrouble, Fault};
use super::world::World;
use crate::catalog::{EC2_VCPU_QUOTAS, ec2_vcpu_quota_by_code};
use crate::model::Cloud;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

/// The `X-Amz-Target` prefix of Service Quotas operations.
pub const TARGET_PREFIX: &str = "ServiceQuotasV20190624.";
const EC2_SERVICE_NAME: &str = "Amazon Elastic Compute Cloud (Amazon EC2)";
/// ListServiceQuotas `MaxResults` range, as the model says.
const MAX_RESULTS: std::ops::RangeInclusive<usize> = 1..=100;

/// A response: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotasResponse {
    pub status: StatusCode,
    pub body: Value,
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> QuotasResponse {
    QuotasResponse { status, body: json!({ "__type": kind, "message": message.into() }) }
}

fn no_such_resource(message: impl Into<String>) -> QuotasResponse {
    error(StatusCode::BAD_REQUEST, "NoSuchResourceException", message)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    service_code: Option<String>,
    quota_code: Option<String>,
    next_token: Option<String>,
    max_results: Option<usize>,
}

/// Handles one Service Quotas request; `target` is the whole `X-Amz-Target`.
pub fn handle(world: &mut World, region: &str, target: &str, body: &[u8]) -> QuotasResponse {
    let Some(operation) =
        target.strip_prefix(TARGET_PREFIX).filter(|o| matches!(*o, "GetServiceQuota" | "ListServiceQuotas"))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("The simulator serves GetServiceQuota and ListServiceQuotas, not {target}"),
        );
    };
    world.record_call(Cloud::Aws, operation);
    match world.inject_fault(Cloud::Aws, region, operation) {
        None => {}
        Some(Fault::Throttled) => {
            return error(StatusCode::BAD_REQUEST, "TooManyRequestsException", "Rate exceeded");
        }
        Some(Fault::Transient { .. } | Fault::Reset) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", "Something went wrong.");
        }
        Some(Fault::Credentials(CredentialTrouble::Expired)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "ExpiredTokenException",
                "The security token included in the request is expired",
            );
        }
        Some(Fault::Credentials(CredentialTrouble::Forbidden)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "AccessDeniedException",
                format!("You are not authorized to perform servicequotas:{operation}"),
            );
        }
    }
    let request: Request = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, "SerializationException", format!("{e}")),
    };
    match request.service_code.as_deref() {
        Some("ec2") => {}
        Some(other) => {
            return no_such_resource(format!("The simulator serves quotas of service ec2 only, not {other}"));
        }
        None => return error(StatusCode::BAD_REQUEST, "ValidationException", "ServiceCode is required"),
    }
    if operation == "GetServiceQuota" {
        get(world, region, request.quota_code.as_deref())
    } else {
        list(world, region, &request)
    }
}

fn quota_json(region: &str, code: &str, limit: u32) -> Value {
    let name = ec2_vcpu_quota_by_code(code).map_or("", |q| q.name);
    json!({
        "ServiceCode": "ec2",
        "ServiceName": EC2_SERVICE_NAME,
        "QuotaArn": format!("arn:aws:servicequotas:{region}:{}:ec2/{code}", super::ec2::OWNER_ID),
        "QuotaCode": code,
        "QuotaName": name,
        "Value": f64::from(limit),
        "Unit": "None",
        "Adjustable": true,
        "GlobalQuota": false,
    })
}

fn get(world: &World, region: &str, code: Option<&str>) -> QuotasResponse {
    let Some(code) = code else {
        return error(StatusCode::BAD_REQUEST, "ValidationException", "QuotaCode is required");
    };
    if ec2_vcpu_quota_by_code(code).is_none() {
        let known: Vec<&str> = EC2_VCPU_QUOTAS.iter().map(|q| q.code).collect();
        return no_such_resource(format!(
            "The quota {code} does not exist for ec2 (the simulator has {})",
            known.join(", ")
        ));
    }
    match world.account.ec2_vcpu_limit(region, code) {
        Some(limit) => {
            QuotasResponse { status: StatusCode::OK, body: json!({ "Quota": quota_json(region, code, limit) }) }
        }
        None => no_such_resource(format!("The applied quota value of {code} is not available in {region}")),
    }
}

fn list(world: &World, region: &str, request: &Request) -> QuotasResponse {
    let page_size = request.max_results.unwrap_or(*MAX_RESULTS.end());
    if !MAX_RESULTS.contains(&page_size) {
        return error(StatusCode::BAD_REQUEST, "ValidationException", "MaxResults must be between 1 and 100");
    }
    let start = match request.next_token.as_deref().map(str::parse::<usize>) {
        None => 0,
        Some(Ok(start)) => start,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "InvalidPaginationTokenException", "Invalid NextToken"),
    };
    let quotas: Vec<Value> = world
        .account
        .ec2_quotas_in(region)
        .filter(|q| request.quota_code.as_deref().is_none_or(|code| code == q.metric))
        .map(|q| quota_json(region, &q.metric, q.limit))
        .collect();
    let page: Vec<Value> = quotas.iter().skip(start).take(page_size).cloned().collect();
    let mut body = json!({ "Quotas": page });
    if quotas.len() > start + page_size {
        body["NextToken"] = json!((start + page_size).to_string());
    }
    QuotasResponse { status: StatusCode::OK, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::sim::scenario::Scenario;

    fn world() -> World {
        let text = "[[quota]]\ncloud = \"aws\"\nregion = \"us-east-1\"\nmetric = \"L-417A185B\"\nlimit = 0\n\
                    [[quota]]\ncloud = \"aws\"\nregion = \"us-east-1\"\nmetric = \"L-DB2E81BA\"\nlimit = 96\n";
        let scenario = Scenario::parse(text, std::path::Path::new("s.toml")).unwrap();
        World::new(Some(&scenario), &Catalog::builtin()).unwrap()
    }

    fn call(world: &mut World, operation: &str, body: Value) -> QuotasResponse {
        handle(world, "us-east-1", &format!("{TARGET_PREFIX}{operation}"), body.to_string().as_bytes())
    }

    #[test]
    fn sim_service_quotas_serve_the_scenario_and_nothing_else() {
        let mut world = world();
        let p = call(&mut world, "GetServiceQuota", json!({"ServiceCode": "ec2", "QuotaCode": "L-417A185B"}));
        assert_eq!((p.status, p.body["Quota"]["Value"].as_f64()), (StatusCode::OK, Some(0.0)));
        assert_eq!(p.body["Quota"]["QuotaName"], "Running On-Demand P instances");
        let unset = call(&mut world, "GetServiceQuota", json!({"ServiceCode": "ec2", "QuotaCode": "L-1216C47A"}));
        assert_eq!(unset.body["__type"], "NoSuchResourceException");
        let unknown = call(&mut world, "GetServiceQuota", json!({"ServiceCode": "ec2", "QuotaCode": "L-00000000"}));
        assert_eq!(unknown.body["__type"], "NoSuchResourceException");
        let first = call(&mut world, "ListServiceQuotas", json!({"ServiceCode": "ec2", "MaxResults": 1}));
        assert_eq!(first.body["Quotas"].as_array().map(Vec::len), Some(1));
        let token = first.body["NextToken"].as_str().unwrap().to_string();
        let second = call(&mut world, "ListServiceQuotas", json!({"ServiceCode": "ec2", "NextToken": token}));
        assert_eq!(second.body["Quotas"][0]["QuotaCode"], "L-DB2E81BA");
        assert!(second.body.get("NextToken").is_none());
        let other_region =
            handle(&mut world, "us-west-2", &format!("{TARGET_PREFIX}ListServiceQuotas"), br#"{"ServiceCode":"ec2"}"#);
        assert_eq!(other_region.body["Quotas"], json!([]));
        assert_eq!(world.counters()["aws"]["ListServiceQuotas"], 3);
        let bad = handle(&mut world, "us-east-1", "ServiceQuotasV20190624.DeleteEverything", b"{}");
        assert_eq!(bad.body["__type"], "UnknownOperationException");
    }
}
