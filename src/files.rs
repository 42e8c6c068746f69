//! gpufleet's own files (state, lock, journal, history, simulator world):
//! private and never reached through a link.
//!
//! The directory holding them may have other writers, so nothing here
//! trusts what is already at a path: a symlink planted where gpufleet
//! writes (`demo.lock -> ~/.bashrc`) is refused, not followed (`O_NOFOLLOW`);
//! temporary files get unpredictable names and are created exclusively
//! (`O_EXCL`), so none can be planted in advance; a FIFO or device in the
//! way is refused instead of hanging the command (`O_NONBLOCK`, then a
//! regular-file check). Directories gpufleet creates are 0700 and its files
//! 0600, set explicitly because the umask masks the mode given at creation.
//!
//! Writes are atomic: temp file, fsync, rename, fsync the directory, so a
//! reader sees the old file or the new one, never a torn one.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

const PRIVATE_FILE: u32 = 0o600;
const PRIVATE_DIR: u32 = 0o700;

/// Create `dir` and its missing parents, each 0700.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> =
        dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && fs::symlink_metadata(d).is_err()).collect();
    DirBuilder::new().recursive(true).mode(PRIVATE_DIR).create(dir)?;
    for created in missing {
        fs::set_permissions(created, Permissions::from_mode(PRIVATE_DIR))?;
    }
    Ok(())
}

/// Open `path` as `options` say (its directory created if missing), as
/// [`open_regular`] does; a file of this user's is made 0600.
pub fn open(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir(dir)?;
    }
    let file = open_regular(path, options.mode(PRIVATE_FILE))?;
    // One created here has the mode the umask left, one from an older
    // gpufleet may be 0644: make it private (a file of another user is left
    // as it is, its owner's to fix).
    let meta = file.metadata()?;
    if meta.permissions().mode() & 0o777 != PRIVATE_FILE && owned_by_us(&meta) {
        file.set_permissions(Permissions::from_mode(PRIVATE_FILE))?;
    }
    Ok(file)
}

/// Open `path` as `options` say, never through a symlink, without blocking
/// on a FIFO, and only if it is a regular file.
pub fn open_regular(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let file = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| explained(path, e))?;
    if !file.metadata()?.is_file() {
        return Err(not_a_file());
    }
    Ok(file)
}

/// Whether this process's user owns the file.
fn owned_by_us(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    meta.uid() == unsafe { libc::geteuid() }
}

/// A link in the way reads as ELOOP ("too many levels of symbolic links"),
/// a FIFO opened to write as ENXIO: say what is in the way instead.
fn explained(path: &Path, error: io::Error) -> io::Error {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_symlink() => io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a symbolic link, which gpufleet never follows here: remove it",
        ),
        Ok(meta) if !meta.is_file() && !meta.is_dir() => not_a_file(),
        _ => error,
    }
}

fn not_a_file() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "it is not a regular file; gpufleet leaves it alone")
}

/// The whole of `path`, read as [`open`] opens it; `None` when it does not exist.
pub fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut file = match open(path, OpenOptions::new().read(true)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Replace `path` with `bytes` atomically; the file is 0600. A symlink at
/// `path` is replaced, not followed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut file = open(&tmp, OpenOptions::new().write(true).create_new(true))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Open for appending, created 0600 if missing.
pub fn open_append(path: &Path) -> io::Result<File> {
    open(path, OpenOptions::new().append(true).create(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Files and directories were created with the process umask: 0644 and
    /// 0755 under the usual 022, readable by every local user.
    #[test]
    fn created_files_and_directories_are_private_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: umask only changes this process's creation mask; the test restores it.
        let old = unsafe { libc::umask(0o002) };
        let nested = dir.path().join("a").join("b");
        let file = nested.join("demo.json");
        let result = write_atomic(&file, b"{}").and_then(|()| open_append(&nested.join("demo.journal.jsonl")));
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        result.unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&nested.join("demo.journal.jsonl")), 0o600);
    }

    /// A symlink planted where gpufleet writes used to be followed, so
    /// another writer of the directory could make it overwrite any file the
    /// user may write.
    #[test]
    fn a_planted_symlink_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("bashrc");
        fs::write(&target, b"precious").unwrap();
        let link = dir.path().join("demo.journal.jsonl");
        symlink(&target, &link).unwrap();
        let err = open_append(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = read(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // Replacing atomically swaps the link itself, never writes through it.
        write_atomic(&link, b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        assert!(!fs::symlink_metadata(&link).unwrap().is_symlink());
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }

    /// A FIFO in place of a state file used to hang the command on open.
    #[test]
    fn a_fifo_in_the_way_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("demo.json");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let err = open_append(&fifo).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = read(&fifo).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
