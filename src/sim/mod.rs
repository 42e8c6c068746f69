//! The cloud simulator.

use std::net::SocketAddr;
use std::path::Path;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// Serve the simulator on `listen` until interrupted.
pub async fn run_server(_listen: SocketAddr, _scenario: Option<&Path>, _world: Option<&Path>) -> Result<(), SimError> {
    Ok(())
}

pub async fn sim_now(_url: &str) -> Result<chrono::DateTime<chrono::Utc>, SimError> {
    Ok(chrono::Utc::now())
}
