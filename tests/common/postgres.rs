//! A throwaway PostgreSQL cluster for one test: `initdb` in a temporary
//! directory, `pg_ctl start` listening only on a Unix socket in that
//! directory (no TCP port, so parallel tests never collide), password
//! authentication on, stopped and removed when dropped.
//!
//! The server binaries are Debian's (`/usr/lib/postgresql/<version>/bin`,
//! package `postgresql`), or those in `GPUFLEET_PG_BIN`. They refuse to run
//! as root, so as root the cluster runs as the `postgres` user the package
//! creates. When they are missing the test fails and says how to install
//! them: it never skips.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The password of the cluster's `gpufleet` user: tests assert it never
/// shows up in any output.
pub const PASSWORD: &str = "pw-9f3c1e7a-never-printed";

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// `postgres://gpufleet:PASSWORD@%2Ftmp%2F...%2F/gpufleet`: the host is
    /// the socket directory, percent-encoded.
    pub url: String,
    /// Server options beyond the socket directory and port.
    options: String,
    port: u16,
    /// Directories the server reads from (its TLS files).
    keep: Vec<tempfile::TempDir>,
}

/// The TCP side of a cluster started with [`Postgres::start_with_tls`].
pub struct TlsListener {
    /// `postgres://gpufleet:PASSWORD@localhost:PORT/gpufleet`, without TLS parameters.
    pub url: String,
    /// The PEM certificate of the throwaway CA that signed the server's.
    pub ca: PathBuf,
}

impl Postgres {
    pub fn start() -> Postgres {
        Postgres::start_with(5432, String::new())
    }

    /// A cluster that also listens on `localhost` over TCP with TLS on: its
    /// certificate, for `localhost`, is signed by a CA made for this test.
    /// The port is one the kernel just gave out and took back.
    pub fn start_with_tls() -> (Postgres, TlsListener) {
        let certs = tempfile::Builder::new().prefix("gpufleet-pg-tls").tempdir_in("/tmp").unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let (ca, crt, key) =
            (certs.path().join("ca.pem"), certs.path().join("server.crt"), certs.path().join("server.key"));
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        std::fs::write(&crt, server_cert.pem()).unwrap();
        std::fs::write(&key, server_key.serialize_pem()).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(certs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            // The server runs as `postgres`, and wants its key private to it.
            let owner = std::process::Command::new("id").args(["-u", "postgres"]).output().unwrap();
            let uid: u32 = String::from_utf8_lossy(&owner.stdout).trim().parse().unwrap();
            std::os::unix::fs::chown(&key, Some(uid), None).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let options = format!(
            "-c listen_addresses=localhost -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            crt.display(),
            key.display()
        );
        let mut pg = Postgres::start_with(port, options);
        // The certificates live as long as the cluster.
        pg.keep.push(certs);
        let url = format!("postgres://gpufleet:{PASSWORD}@localhost:{port}/gpufleet");
        (pg, TlsListener { url, ca })
    }

    /// A cluster on `port` (its socket's name; TCP only if `options` say).
    fn start_with(port: u16, options: String) -> Postgres {
        let bin = server_bin();
        let dir = tempfile::Builder::new().prefix("gpufleet-pg").tempdir_in("/tmp").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        let pg = Postgres {
            url: format!(
                "postgres://gpufleet:{PASSWORD}@{}:{port}/gpufleet",
                dir.path().display().to_string().replace('/', "%2F")
            ),
            dir,
            bin,
            options,
            port,
            keep: Vec::new(),
        };
        pg.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "gpufleet",
                "--auth=scram-sha-256",
                "--pwfile",
                path(&pwfile),
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
        );
        std::fs::remove_file(&pwfile).unwrap();
        pg.start_again();
        pg.run("createdb", &["-h", path(pg.dir.path()), "-p", &port.to_string(), "-U", "gpufleet", "gpufleet"]);
        pg
    }

    /// Start the (stopped) server, listening on its socket directory only.
    pub fn start_again(&self) {
        let data = self.dir.path().join("data");
        let options = match self.options.as_str() {
            "" => format!("-k {} -p {} -c listen_addresses= -c fsync=off", self.dir.path().display(), self.port),
            extra => format!("-k {} -p {} -c fsync=off {extra}", self.dir.path().display(), self.port),
        };
        // With a log file, so the server does not hold our output pipe open.
        let log = self.dir.path().join("server.log");
        self.run("pg_ctl", &["-D", path(&data), "-o", &options, "-l", path(&log), "-w", "start"]);
    }

    /// Stop the server (fast shutdown: sessions are cut), as an outage does.
    pub fn stop(&self) {
        let data = self.dir.path().join("data");
        self.run("pg_ctl", &["-D", path(&data), "-m", "fast", "-w", "stop"]);
    }

    /// Stop the server and start it again, as a database restart does.
    pub fn restart(&self) {
        let data = self.dir.path().join("data");
        // With a log file, so the server does not hold our output pipe open.
        let log = self.dir.path().join("server.log");
        self.run("pg_ctl", &["-D", path(&data), "-l", path(&log), "-m", "fast", "-w", "restart"]);
    }

    /// Run one of the server's programs as the cluster's owner.
    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One of the server's programs, run as the cluster's owner: root may not.
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut command = if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        command.env("PGPASSWORD", PASSWORD);
        command
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.command("pg_ctl").args(["-D", path(&data), "-m", "immediate", "-w", "stop"]).output();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Where `initdb` and `pg_ctl` are: `GPUFLEET_PG_BIN`, else the newest
/// Debian PostgreSQL installed.
fn server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("GPUFLEET_PG_BIN") {
        return PathBuf::from(bin);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "these tests need a PostgreSQL server: install Debian's `postgresql` package \
             (apt-get install -y postgresql; .ci/run does) or set GPUFLEET_PG_BIN to the directory of initdb and pg_ctl"
        ),
    }
}
