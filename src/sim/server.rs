//! The simulator's one listener: an axum router that sends each path to its
//! protocol (EC2 at `POST /`, Compute Engine under `/compute/v1/`, Azure
//! Resource Manager under `/subscriptions/`, the admin API under `/_sim/`).
//! This is the only file of the simulator that touches sockets.
//!
//! Every cloud request passes the admin API's pause gate first
//! ([`admin::PauseGate`]), which may hold it before it is applied or before
//! its response is sent; the world's lock is never held while it waits.
//!
//! A call that met an injected connection reset gets no response at all:
//! its body stream fails before yielding a byte, and hyper then closes the
//! connection without writing the status line ([`connection_reset`]).

use super::world::World;
use super::{SimError, admin, arm, ec2, gce, service_quotas, store};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;

/// The world behind every request, and where to persist it.
struct Shared {
    /// A plain mutex: requests are short and never await while holding it,
    /// and saving under it keeps the file's order of writes equal to the
    /// order of changes.
    world: Mutex<World>,
    world_file: Option<PathBuf>,
    /// Holds the cloud request a test armed `/_sim/pause` for.
    pause: admin::PauseGate,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock cannot leave the world half-changed
        // in a way later requests would trip on, so keep serving.
        self.world.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Persists the world after a change, if a world file is in use.
    fn persist(&self, world: &World) -> Result<(), SimError> {
        match &self.world_file {
            Some(path) => store::save(path, world),
            None => Ok(()),
        }
    }
}

/// Serves the simulator on `listener` until `shutdown` completes, then
/// returns the final world. With `world_file`, the world is saved after
/// every request that changed it, before the response goes out.
pub async fn serve(
    listener: TcpListener,
    world: World,
    world_file: Option<PathBuf>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<World, SimError> {
    let shared = Arc::new(Shared { world: Mutex::new(world), world_file, pause: admin::PauseGate::default() });
    let clouds = Router::new()
        .route("/", post(ec2_request))
        .route("/compute/v1/{*path}", any(gce_request))
        .route("/subscriptions/{*rest}", any(arm_request))
        .route_layer(axum::middleware::from_fn_with_state(shared.clone(), wire_delay));
    let router = clouds
        .route("/_sim/world", get(admin_world))
        .route("/_sim/counters", get(admin_counters))
        .route("/_sim/time", get(admin_time))
        .route("/_sim/advance", post(admin_advance))
        .route("/_sim/capacity", post(admin_capacity))
        .route("/_sim/latency", post(admin_latency))
        .route("/_sim/pause", post(admin_pause))
        .route("/_sim/paused", get(admin_paused))
        .route("/_sim/resume", post(admin_resume))
        .fallback(not_found)
        .with_state(shared.clone());
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| SimError::Serve { source })?;
    let world = shared.lock().clone();
    Ok(world)
}

/// Hold every cloud request back by the world's wire latency (real time,
/// the simulated clock untouched), so benchmarks see round trips.
async fn wire_delay(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let latency = shared.lock().wire_latency.min(super::scenario::MAX_WIRE_LATENCY);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    next.run(request).await
}

async fn ec2_request(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let region = ec2::region_from_authorization(authorization);
    // The awsJson protocols share `POST /` with EC2's Query API; their target header tells them apart.
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return service_quotas_request(&shared, &region, target, &body).await;
    }
    let mut ticket = shared.pause.check_in(|| format!("ec2 {}", ec2_action(&body)));
    if ticket.dropped_before_applying().await {
        return dropped_by_pause();
    }
    let (response, reset) = {
        let mut world = shared.lock();
        let clock = world.now;
        let mut response = ec2::handle(&mut world, &region, &body);
        if (response.mutated || world.now != clock)
            && let Err(e) = shared.persist(&world)
        {
            // The change is in memory but not on disk: report a server error, so
            // the client retries with its ClientToken and the retry saves again.
            let error = ec2::ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "InternalError",
                message: format!("the simulator could not save its world: {e}"),
            };
            response.status = error.status;
            response.body = ec2::error_xml(&error, &world.next_request_id());
        }
        (response, world.take_reset())
    };
    ticket.held_before_responding().await;
    if reset {
        return connection_reset();
    }
    (response.status, [(header::CONTENT_TYPE, "text/xml;charset=UTF-8")], response.body).into_response()
}

/// Service Quotas (awsJson1_1): reads only, so nothing to persist but a
/// clock moved by an injected latency.
async fn service_quotas_request(shared: &Shared, region: &str, target: &str, body: &[u8]) -> Response {
    let mut ticket = shared.pause.check_in(|| format!("servicequotas {target}"));
    if ticket.dropped_before_applying().await {
        return dropped_by_pause();
    }
    let (response, reset) = {
        let mut world = shared.lock();
        let clock = world.now;
        let mut response = service_quotas::handle(&mut world, region, target, body);
        if world.now != clock
            && let Err(e) = shared.persist(&world)
        {
            response = service_quotas::QuotasResponse {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: serde_json::json!({ "__type": "ServiceException", "message": format!("the simulator could not save its world: {e}") }),
            };
        }
        (response, world.take_reset())
    };
    ticket.held_before_responding().await;
    if reset {
        return connection_reset();
    }
    let body = response.body.to_string();
    (response.status, [(header::CONTENT_TYPE, "application/x-amz-json-1.1")], body).into_response()
}

/// The `Action` parameter of an EC2 Query API body, to name a held request.
fn ec2_action(body: &[u8]) -> String {
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    params.into_iter().find(|(name, _)| name == "Action").map_or_else(|| "(no Action)".to_string(), |(_, value)| value)
}

/// What a request held before it was applied gets when `/_sim/resume`
/// drops it: a 503, as for a request lost on the way.
fn dropped_by_pause() -> Response {
    let body = serde_json::json!({ "error": "the simulator dropped this request unapplied: it was held by /_sim/pause and released by /_sim/resume" });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

async fn gce_request(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().strip_prefix("/compute/v1/").unwrap_or_default();
    let mut ticket = shared.pause.check_in(|| format!("gce {method} {}", uri.path()));
    if ticket.dropped_before_applying().await {
        return dropped_by_pause();
    }
    let (response, reset) = {
        let mut world = shared.lock();
        let clock = world.now;
        let mut response = gce::handle(&mut world, &method, path, uri.query().unwrap_or_default(), &body);
        if (response.mutated || world.now != clock)
            && let Err(e) = shared.persist(&world)
        {
            // As for EC2: a 5xx, so the client retries with its requestId.
            let error = gce::HttpError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                reason: "backendError",
                message: format!("the simulator could not save its world: {e}"),
            };
            response.status = error.status;
            response.body = error.body();
        }
        (response, world.take_reset())
    };
    ticket.held_before_responding().await;
    if reset {
        return connection_reset();
    }
    (response.status, Json(response.body)).into_response()
}

async fn arm_request(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    // Links in responses (operations, next pages) lead back to this listener.
    let base_url = format!("http://{}", text(header::HOST).unwrap_or("127.0.0.1"));
    let request = arm::ArmRequest {
        method: &method,
        path: uri.path(),
        query: uri.query(),
        authorization: text(header::AUTHORIZATION),
        base_url: &base_url,
        body: &body,
    };
    let mut ticket = shared.pause.check_in(|| format!("arm {method} {}", uri.path()));
    if ticket.dropped_before_applying().await {
        return dropped_by_pause();
    }
    let (response, reset) = {
        let mut world = shared.lock();
        let clock = world.now;
        let response = arm::handle(&mut world, request);
        let response = match (response.mutated || world.now != clock).then(|| shared.persist(&world)) {
            Some(Err(e)) => {
                // Not on disk: a server error, so the client retries the (idempotent) request.
                let message = format!("the simulator could not save its world: {e}");
                arm::error_response(&super::vmss::ArmFault::new(500, "InternalServerError", message))
            }
            _ => response,
        };
        (response, world.take_reset())
    };
    ticket.held_before_responding().await;
    if reset {
        return connection_reset();
    }
    let mut out = match &response.body {
        Some(body) => (response.status, Json(body)).into_response(),
        None => response.status.into_response(),
    };
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
            out.headers_mut().insert(name, value);
        }
    }
    out
}

/// A response that is never sent: its body fails at once, before any byte,
/// and hyper answers a failing body by closing the connection, so the client
/// sees the connection drop (EOF or reset) instead of a status.
fn connection_reset() -> Response {
    let error = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected connection reset");
    Response::new(Body::from_stream(futures::stream::once(async move { Err::<Bytes, _>(error) })))
}

/// Runs an admin action under the lock and persists the world if it changed.
fn admin_call(shared: &Shared, action: impl FnOnce(&mut World) -> admin::AdminResponse) -> Response {
    let mut world = shared.lock();
    let response = action(&mut world);
    if response.mutated
        && let Err(e) = shared.persist(&world)
    {
        let body = serde_json::json!({ "error": e.to_string() });
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
    }
    (response.status, Json(response.body)).into_response()
}

async fn admin_world(State(shared): State<Arc<Shared>>) -> Response {
    admin_call(&shared, |world| admin::world(world))
}

async fn admin_counters(State(shared): State<Arc<Shared>>) -> Response {
    admin_call(&shared, |world| admin::counters(world))
}

async fn admin_time(State(shared): State<Arc<Shared>>) -> Response {
    admin_call(&shared, |world| admin::time(world))
}

async fn admin_advance(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    admin_call(&shared, |world| admin::advance(world, &body))
}

async fn admin_latency(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    admin_call(&shared, |world| admin::set_latency(world, &body))
}

async fn admin_capacity(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    admin_call(&shared, |world| admin::set_capacity(world, &body))
}

async fn admin_pause(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let response = shared.pause.arm(&body);
    (response.status, Json(response.body)).into_response()
}

async fn admin_paused(State(shared): State<Arc<Shared>>) -> Response {
    let response = shared.pause.paused().await;
    (response.status, Json(response.body)).into_response()
}

async fn admin_resume(State(shared): State<Arc<Shared>>) -> Response {
    let response = shared.pause.resume();
    (response.status, Json(response.body)).into_response()
}

async fn not_found() -> Response {
    let body = serde_json::json!({ "error": "no such endpoint: EC2 is POST /, ARM is under /subscriptions/, the admin API is under /_sim/" });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
