//! World files: the simulated world saved as JSON between commands, written
//! so that a simulator killed at any moment (even with SIGKILL) leaves
//! either the previous or the new world on disk, never half of one.

use super::SimError;
use super::world::World;
use crate::files;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Bumped whenever a change to [`World`] makes old files unreadable.
const FORMAT: u32 = 1;

#[derive(Serialize)]
struct WorldFileRef<'a> {
    format: u32,
    world: &'a World,
}

#[derive(Deserialize)]
struct Header {
    format: u32,
}

#[derive(Deserialize)]
struct WorldFile {
    #[allow(dead_code)]
    format: u32,
    world: World,
}

/// Loads a world file; `Ok(None)` when there is none yet. A damaged file is
/// refused naming the field (`world.instances.3.seq`), its line and column.
pub fn load(path: &Path) -> Result<Option<World>, SimError> {
    let bytes = match files::read(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(source) => return Err(SimError::ReadWorld { path: path.to_path_buf(), source }),
    };
    let invalid = |message: String| SimError::InvalidWorld { path: path.to_path_buf(), message };
    // The format first: a file of another format is refused for that, not
    // for the fields it happens to lack.
    let header: Header = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    if header.format != FORMAT {
        return Err(invalid(format!("format {} is not the format {FORMAT} this gpufleet reads", header.format)));
    }
    let file: WorldFile = crate::json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    file.world.check().map_err(invalid)?;
    Ok(Some(file.world))
}

/// Saves atomically and privately, through no symlink (see [`files`]): the
/// world file sits in the state directory, which may have other writers.
pub fn save(path: &Path, world: &World) -> Result<(), SimError> {
    let failed = |source: std::io::Error| SimError::WriteWorld { path: path.to_path_buf(), source };
    let json = serde_json::to_vec_pretty(&WorldFileRef { format: FORMAT, world })
        .map_err(|e| failed(std::io::Error::other(e)))?;
    files::write_atomic(path, &json).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::sim::world::LaunchRequest;
    use std::fs;

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
                attach: Default::default(),
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

    fn saved_world(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> std::path::PathBuf {
        let path = dir.join("world.json");
        save(&path, &World::new(None, &Catalog::builtin()).unwrap()).unwrap();
        let mut value: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        edit(&mut value);
        fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
        path
    }

    /// `next_request_seq` at u64::MAX overflowed on the next call, in a
    /// server thread, and every call of the command failed with a panic.
    #[test]
    fn sim_world_file_with_sequences_near_u64_max_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for field in ["next_request_seq", "next_instance_seq", "next_reservation_seq"] {
            let path = saved_world(dir.path(), |w| w["world"][field] = serde_json::json!(u64::MAX));
            let message = load(&path).unwrap_err().to_string();
            assert!(message.contains("world.json") && message.contains(field), "{message}");
        }
        let path = saved_world(dir.path(), |w| w["world"]["gce"]["next_seq"] = serde_json::json!(u64::MAX));
        assert!(load(&path).unwrap_err().to_string().contains("gce.next_seq"));
        let path = saved_world(dir.path(), |w| w["world"]["arm"]["next_vm_seq"] = serde_json::json!(u64::MAX));
        assert!(load(&path).unwrap_err().to_string().contains("arm.next_vm_seq"));
    }

    #[test]
    fn sim_world_file_with_a_clock_outside_years_1970_to_9999_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for now in ["+262142-12-31T23:59:59Z", "-262143-01-01T00:00:00Z", "1969-12-31T23:59:59Z"] {
            let path = saved_world(dir.path(), |w| w["world"]["now"] = serde_json::json!(now));
            let message = load(&path).unwrap_err().to_string();
            assert!(message.contains("world.json") && message.contains("world.now"), "{now}: {message}");
        }
        let path = saved_world(dir.path(), |w| w["world"]["now"] = serde_json::json!("9999-12-31T23:59:59Z"));
        assert!(load(&path).unwrap().is_some());
    }

    #[test]
    fn sim_world_file_damage_is_located_and_bad_utf8_is_invalid_not_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved_world(dir.path(), |w| w["world"]["next_request_seq"] = serde_json::json!("seven"));
        let message = load(&path).unwrap_err().to_string();
        assert!(message.contains("world.next_request_seq: invalid type") && message.contains("line"), "{message}");
        fs::write(&path, b"{\"format\": 1, \"world\": \"\xff\"}").unwrap();
        assert!(matches!(load(&path), Err(SimError::InvalidWorld { .. })));
    }

    /// The embedded simulator keeps its world in the state directory, whose
    /// other writers could plant a link there to a file of the user's.
    #[test]
    fn sim_world_file_saved_over_a_symlink_leaves_its_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        fs::write(&target, b"keep").unwrap();
        let path = dir.path().join("world.json");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("symbolic link"));
        save(&path, &World::new(None, &Catalog::builtin()).unwrap()).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert!(load(&path).unwrap().is_some());
    }
}
