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

pub struct EmbeddedSim {
    url: String,
}
impl EmbeddedSim {
    pub async fn start(_state_dir: &Path, _scenario: Option<&Path>) -> Result<EmbeddedSim, SimError> {
        Ok(EmbeddedSim { url: String::new() })
    }
    pub fn url(&self) -> &str {
        &self.url
    }
    pub async fn stop(self) -> Result<(), SimError> {
        Ok(())
    }
}
pub fn advance_embedded(_state_dir: &Path, _by: std::time::Duration) -> Result<chrono::DateTime<chrono::Utc>, SimError> {
    Ok(chrono::Utc::now())
}
