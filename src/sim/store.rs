//! World files: the simulated world saved as JSON between commands, written
//! so that a simulator killed at any moment (even with SIGKILL) leaves
//! either the previous or the new world on disk, never half of one.

use super::SimError;
use super::world::World;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write as _;
use std::path::Path;

/// Bumped whenever a change to [`World`] makes old files unreadable.
const FORMAT: u32 = 1;

#[derive(Serialize)]
struct WorldFileRef<'a> {
    format: u32,
    world: &'a World,
}

#[derive(Deserialize)]
struct WorldFile {
    format: u32,
    world: serde_json::Value,
}

/// Loads a world file; `Ok(None)` when there is none yet.
pub fn load(path: &Path) -> Result<Option<World>, SimError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SimError::ReadWorld { path: path.to_path_buf(), source }),
    };
    let invalid = |message: String| SimError::InvalidWorld { path: path.to_path_buf(), message };
    let file: WorldFile = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if file.format != FORMAT {
        return Err(invalid(format!("format {} is not the format {FORMAT} this gpufleet reads", file.format)));
    }
    serde_json::from_value(file.world).map(Some).map_err(|e| invalid(e.to_string()))
}

/// Saves atomically: a temporary file next to the target (mode 0600),
/// fsynced, renamed over it, then the directory fsynced so the rename lasts.
pub fn save(path: &Path, world: &World) -> Result<(), SimError> {
    let failed = |source: std::io::Error| SimError::WriteWorld { path: path.to_path_buf(), source };
    let json = serde_json::to_vec_pretty(&WorldFileRef { format: FORMAT, world })
        .map_err(|e| failed(std::io::Error::other(e)))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(failed)?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "world.json".into());
    let temp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(&json)?;
        file.sync_all()
    });
    if let Err(source) = written.and_then(|()| fs::rename(&temp, path)) {
        let _ = fs::remove_file(&temp);
        return Err(failed(source));
    }
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::sim::world::LaunchRequest;

    #[test]
    fn sim_world_file_round_trips_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim").join("world.json");
        assert!(load(&path).unwrap().is_none());
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        world
            .launch(LaunchRequest {
                region: "us-east-1".into(),
                image_id: "ami-1".into(),
                instance_type: "p5.48xlarge".into(),
                min_count: 2,
                max_count: 2,
                client_token: Some("t".into()),
                zone: None,
                tags: Default::default(),
                user_data: None,
            })
            .unwrap();
        save(&path, &world).unwrap();
        assert_eq!(load(&path).unwrap(), Some(world));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn sim_world_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("world.json");
        fs::write(&path, "{\"format\": 99, \"world\": {}}").unwrap();
        let message = load(&path).unwrap_err().to_string();
        assert!(message.contains("world.json") && message.contains("format 99"), "{message}");
        fs::write(&path, "not json").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("world.json"));
    }
}
