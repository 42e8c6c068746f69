//! The state lock: one writer per plan.
//!
//! Two layers: an OS advisory lock (`flock`) on the lock file, which the
//! kernel drops the moment its holder dies, even under SIGKILL; and the file's
//! content, naming the holder (host, pid, command, since) with a lease, for
//! messages and for holders on other hosts sharing the directory. A lock is
//! taken over only when its holder is provably dead or its lease has expired.
//! On this host the free `flock` is the proof: a holder named in the file but
//! not holding the `flock` has died, whatever its pid shows now (a killed
//! process stays a zombie until its parent reaps it, and pids are reused).

use crate::files;
use crate::model::printable;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a lock stays valid without a renewal.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub since: DateTime<Utc>,
    pub lease_expires: DateTime<Utc>,
}

impl Holder {
    /// This process, holding since `now`.
    pub fn this_process(command: &str, now: DateTime<Utc>, lease: Duration) -> Holder {
        Holder {
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            command: command.to_string(),
            since: now,
            lease_expires: lease_end(now, lease),
        }
    }

    /// Whether this holder, named in a lock file whose `flock` the caller
    /// just took, may still own the lock at `now`. On this host it cannot: it
    /// would hold the `flock`. On another host, whose `flock`s may not reach
    /// here, it does until its lease ends.
    fn may_hold_without_flock(&self, now: DateTime<Utc>) -> bool {
        let this_host = gethostname::gethostname().to_string_lossy().into_owned();
        self.host != this_host && now < self.lease_expires
    }
}

/// Host and command come from a lock file or a database row that anyone with
/// access may have written: they are shown [`printable`].
impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` (pid {} on {}) since {}, lease until {}",
            printable(&self.command),
            self.pid,
            printable(&self.host),
            self.since.format("%Y-%m-%d %H:%M:%S UTC"),
            self.lease_expires.format("%H:%M:%S UTC")
        )
    }
}

/// When a lease taken at `now` ends; a lease too long to add never ends.
pub(super) fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(lease).ok().and_then(|d| now.checked_add_signed(d)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LockError {
    #[error("the state of plan `{plan}` is locked by {holder} ({path})", path = path.display())]
    #[diagnostic(help(
        "wait for that run to finish (or pass --lock-timeout); if its process is gone, the lock is taken \
         over automatically (at once on the same host, when its lease ends otherwise); if you are sure no \
         run is active, `gpufleet state unlock PLAN --force --reason TEXT` takes it over now"
    ))]
    Held { plan: String, holder: Box<Holder>, path: PathBuf },
    /// A process on this host holds the `flock`, and the file's record of who
    /// it is cannot be read (damaged, or written by something else).
    #[error("the state of plan `{plan}` is locked by a process on this host; its holder record in {path} is unreadable", path = path.display())]
    #[diagnostic(help(
        "a process on this host has the lock: wait for it to finish or stop it; \
         the lock is then taken over at once, whatever the file says"
    ))]
    HeldUnknown { plan: String, path: PathBuf },
    #[error("cannot use lock file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{what} is held by {holder} (in {location})")]
    #[diagnostic(help(
        "wait for that run to finish (or pass --lock-timeout); if its process is gone, the lease ends at \
         the time above and is taken over then, or `gpufleet state unlock PLAN --force --reason TEXT` \
         takes it over now"
    ))]
    HeldShared { what: String, holder: Box<Holder>, location: String },
    #[error("{what} is held, and its holder record in {location} is unreadable")]
    #[diagnostic(help(
        "the row was edited by hand; it is taken over when its expires_at passes, or now with \
         `gpufleet state unlock PLAN --force --reason TEXT`"
    ))]
    HeldUnreadable { what: String, location: String },
    #[error("{what} was taken over in {location}: this run no longer holds it")]
    #[diagnostic(help(
        "the run was paused or cut off longer than its lease and another took over, or someone ran \
         `gpufleet state unlock --force`; it stops before its next cloud call, and the next run finishes \
         what it left"
    ))]
    Lost { what: String, location: String },
}

impl LockError {
    /// Whether another holder has it (rather than the lock being unusable).
    pub fn is_held(&self) -> bool {
        matches!(
            self,
            LockError::Held { .. }
                | LockError::HeldUnknown { .. }
                | LockError::HeldShared { .. }
                | LockError::HeldUnreadable { .. }
        )
    }
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
    plan: String,
    holder: Holder,
}

impl StateLock {
    /// Take the lock at `path` for `holder`, or say who has it.
    pub fn acquire(plan: &str, path: &Path, holder: Holder) -> Result<StateLock, LockError> {
        let io_err = |source| LockError::Io { path: path.to_path_buf(), source };
        let mut file = files::open(path, OpenOptions::new().read(true).write(true).create(true).truncate(false))
            .map_err(io_err)?;
        let current = read_holder(&mut file).map_err(io_err)?;
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(match current {
                    Some(holder) => {
                        LockError::Held { plan: plan.to_string(), holder: Box::new(holder), path: path.to_path_buf() }
                    }
                    None => LockError::HeldUnknown { plan: plan.to_string(), path: path.to_path_buf() },
                });
            }
            return Err(io_err(err));
        }
        // The OS lock is ours; the content may still name a holder on another host.
        let current = read_holder(&mut file).map_err(io_err)?;
        if let Some(other) = current.filter(|h| h.may_hold_without_flock(holder.since)) {
            return Err(LockError::Held { plan: plan.to_string(), holder: Box::new(other), path: path.to_path_buf() });
        }
        let mut lock = StateLock { file, path: path.to_path_buf(), plan: plan.to_string(), holder };
        lock.write_holder().map_err(io_err)?;
        Ok(lock)
    }

    /// Take the lock at `path` whoever holds it: the lock file is unlinked
    /// and a new one taken, so a live holder keeps an `flock` on a file that
    /// is no longer the lock, and learns so at its next renewal.
    pub fn take_over(plan: &str, path: &Path, holder: Holder) -> Result<(StateLock, Option<Holder>), LockError> {
        let io_err = |source| LockError::Io { path: path.to_path_buf(), source };
        let previous = match files::read(path) {
            Ok(bytes) => bytes.and_then(|bytes| serde_json::from_slice(&bytes).ok()),
            // A symlink or FIFO in the way names no holder; it is removed below.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => None,
            Err(e) => return Err(io_err(e)),
        };
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(e)),
            _ => {}
        }
        Ok((StateLock::acquire(plan, path, holder)?, previous))
    }

    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// Extend the lease to `now + lease`, if the lock is still this one's:
    /// a holder whose file was taken over (by `state unlock --force`, or by
    /// a host sharing the directory once the lease ended) learns so here.
    pub fn renew(&mut self, now: DateTime<Utc>, lease: Duration) -> Result<(), LockError> {
        let path = self.path.clone();
        let io_err = |source| LockError::Io { path: path.clone(), source };
        if !self.still_ours().map_err(io_err)? {
            let what = format!("the lock of `{}`", self.plan);
            return Err(LockError::Lost { what, location: self.path.display().to_string() });
        }
        let previous = std::mem::replace(&mut self.holder.lease_expires, lease_end(now, lease));
        self.write_holder().map_err(|source| {
            self.holder.lease_expires = previous;
            io_err(source)
        })
    }

    /// Whether the lock file at the path is still the one this lock holds
    /// and still names this holder.
    fn still_ours(&mut self) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let on_disk = match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let held = self.file.metadata()?;
        if (on_disk.dev(), on_disk.ino()) != (held.dev(), held.ino()) {
            return Ok(false);
        }
        Ok(read_holder(&mut self.file)?.as_ref() == Some(&self.holder))
    }

    fn write_holder(&mut self) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(&self.holder).map_err(io::Error::other)?;
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&json)?;
        self.file.sync_all()
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Empty content means free; the OS lock goes with the descriptor. A
        // lock taken over meanwhile is left to its new holder.
        if self.still_ours().unwrap_or(false) {
            let _ = self.file.set_len(0);
            let _ = self.file.sync_all();
        }
    }
}

/// The holder the file names; `None` when it is empty (free) or unreadable
/// (damaged, not UTF-8, not a holder): such a record proves nothing, so the
/// `flock` alone decides, as for a holder on this host.
fn read_holder(file: &mut File) -> io::Result<Option<Holder>> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)?;
    Ok(serde_json::from_slice(&bytes).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, minute, 0).unwrap()
    }

    #[test]
    fn second_acquire_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.lock");
        let first = StateLock::acquire("demo", &path, Holder::this_process("apply", at(0), DEFAULT_LEASE)).unwrap();
        let err = StateLock::acquire("demo", &path, Holder::this_process("plan", at(1), DEFAULT_LEASE)).unwrap_err();
        match err {
            LockError::Held { holder, .. } => {
                assert_eq!(holder.command, "apply");
                assert_eq!(holder.pid, std::process::id());
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        StateLock::acquire("demo", &path, Holder::this_process("plan", at(2), DEFAULT_LEASE)).unwrap();
    }

    #[test]
    fn dead_holder_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.lock");
        // A holder on this host whose process no longer exists, lease still running.
        let mut dead = Holder::this_process("apply", at(0), DEFAULT_LEASE);
        dead.pid = u32::try_from(libc::pid_t::MAX).unwrap();
        std::fs::write(&path, serde_json::to_vec(&dead).unwrap()).unwrap();
        let lock = StateLock::acquire("demo", &path, Holder::this_process("apply", at(1), DEFAULT_LEASE)).unwrap();
        assert_eq!(lock.holder().pid, std::process::id());
    }

    /// A killed apply stays a zombie, its pid alive to `kill(pid, 0)`, until
    /// its parent reaps it; and pids are reused. The free flock is what proves
    /// the holder dead, so the next run must not wait for either.
    #[test]
    fn same_host_holder_without_the_flock_is_taken_over_even_while_its_pid_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.lock");
        let mut killed = Holder::this_process("apply", at(0), DEFAULT_LEASE);
        // A pid that always exists.
        killed.pid = 1;
        std::fs::write(&path, serde_json::to_vec(&killed).unwrap()).unwrap();
        let lock = StateLock::acquire("demo", &path, Holder::this_process("apply", at(1), DEFAULT_LEASE)).unwrap();
        assert_eq!(lock.holder().pid, std::process::id());
    }

    /// A record that is not UTF-8 used to fail every command with the same
    /// I/O error, with no way out but finding and deleting the file.
    #[test]
    fn unreadable_record_is_taken_over_when_nobody_holds_the_flock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.lock");
        std::fs::write(&path, b"\xff\xfe{\"host\": \xc3").unwrap();
        let lock = StateLock::acquire("demo", &path, Holder::this_process("apply", at(1), DEFAULT_LEASE)).unwrap();
        assert_eq!(lock.holder().pid, std::process::id());
        drop(lock);
        std::fs::write(&path, b"{\"host\": 42}").unwrap();
        StateLock::acquire("demo", &path, Holder::this_process("apply", at(2), DEFAULT_LEASE)).unwrap();
    }

    #[test]
    fn unreadable_record_of_a_live_flock_says_so_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.lock");
        std::fs::write(&path, b"\xff garbage").unwrap();
        let held = File::open(&path).unwrap();
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
        let err = StateLock::acquire("demo", &path, Holder::this_process("plan", at(1), DEFAULT_LEASE)).unwrap_err();
        assert!(matches!(err, LockError::HeldUnknown { .. }), "{err}");
        assert!(err.to_string().contains("demo.lock"), "{err}");
    }

    /// `state unlock --force` on a live holder: the holder's next renewal
    /// fails, and its release leaves the new holder's record alone.
    #[test]
    fn a_lock_taken_over_is_lost_to_its_holder_and_its_release_keeps_the_new_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.lock");
        let mut old = StateLock::acquire("demo", &path, Holder::this_process("apply", at(0), DEFAULT_LEASE)).unwrap();
        let taker = Holder::this_process("state unlock --force", at(1), DEFAULT_LEASE);
        let (new, previous) = StateLock::take_over("demo", &path, taker.clone()).unwrap();
        assert_eq!(previous.unwrap().command, "apply");
        let lost = old.renew(at(2), DEFAULT_LEASE).unwrap_err();
        assert!(matches!(lost, LockError::Lost { .. }), "{lost}");
        drop(old);
        assert_eq!(read_holder(&mut File::open(&path).unwrap()).unwrap(), Some(taker));
        drop(new);
        StateLock::acquire("demo", &path, Holder::this_process("apply", at(3), DEFAULT_LEASE)).unwrap();
    }

    /// A host sharing the directory took the lock over once the lease ended:
    /// the record names it, and the late holder must not renew over it.
    #[test]
    fn a_holder_whose_record_names_another_cannot_renew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.lock");
        let mut lock = StateLock::acquire("demo", &path, Holder::this_process("apply", at(0), DEFAULT_LEASE)).unwrap();
        let mut remote = Holder::this_process("apply", at(11), DEFAULT_LEASE);
        remote.host = "another-host.example".into();
        std::fs::write(&path, serde_json::to_vec(&remote).unwrap()).unwrap();
        assert!(matches!(lock.renew(at(12), DEFAULT_LEASE), Err(LockError::Lost { .. })));
        drop(lock);
        assert_eq!(read_holder(&mut File::open(&path).unwrap()).unwrap(), Some(remote));
    }

    #[test]
    fn remote_holder_blocks_until_its_lease_expires() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.lock");
        let mut remote = Holder::this_process("apply", at(0), Duration::from_secs(600));
        remote.host = "another-host.example".into();
        std::fs::write(&path, serde_json::to_vec(&remote).unwrap()).unwrap();
        let err = StateLock::acquire("demo", &path, Holder::this_process("apply", at(5), DEFAULT_LEASE));
        assert!(matches!(err, Err(LockError::Held { .. })));
        let lock = StateLock::acquire("demo", &path, Holder::this_process("apply", at(11), DEFAULT_LEASE)).unwrap();
        assert_eq!(lock.holder().since, at(11));
    }
}
