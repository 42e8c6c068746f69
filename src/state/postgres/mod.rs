//! The PostgreSQL backend: one database shared by a team's engineers, CI
//! jobs and rebalancers, selected by a `postgres://` state URL.
//!
//! Same model as the local backend: a plan's state is the same JSON document,
//! in a row whose `serial` column makes every save a compare-and-swap; the
//! journal and the history are append-only rows; plan locks and leader leases
//! are rows with an expiry. The schema is versioned: the SQL files of
//! `migrations/` are applied on first use, in one transaction, under an
//! advisory lock, so two first runs do not race.
//!
//! The URL may carry a password: only [`PostgresBackend::location`] (user,
//! host, port, database) ever appears in messages. TLS: see [`tls`].

use super::backend::{Lease, PlanCopy, Repaired, StateBackend};
use super::history::HistoryEntry;
use super::journal::Entry;
use super::local::{StateError, next_stored, parse_stored};
use super::lock::{Holder, LockError, lease_end};
use super::model::State;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;

mod tls;

/// The schema migrations, in order; version n is the n-th.
const MIGRATIONS: &[&str] =
    &[include_str!("../migrations/0001_init.sql"), include_str!("../migrations/0002_damaged_states.sql")];

/// Key of the advisory lock that serializes migrations (any fixed number
/// private to gpufleet: "gpufleet" in ASCII).
const MIGRATION_LOCK: i64 = 0x6770_7566_6c65_6574;

const JOURNAL_INSERT: &str = "INSERT INTO gpufleet_journal (plan, entry) VALUES ($1, $2)";
const HISTORY_INSERT: &str = "INSERT INTO gpufleet_history (plan, entry) VALUES ($1, $2)";

/// How long a connection may take unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// State in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresBackend {
    pool: Pool,
    location: String,
    /// Releases of dropped leases still on their way to the database.
    releases: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Leases (name, token) this process dropped but could not release (the
    /// database was unreachable): still rows, but free for this process.
    abandoned: Arc<Mutex<Vec<(String, String)>>>,
}

impl PostgresBackend {
    /// Connect to `url` and bring its schema up to date.
    pub async fn connect(url: &str) -> Result<PostgresBackend, StateError> {
        let (url, tls) = tls::split(url)?;
        // The parser's messages may quote the URL, password included.
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| StateError::BadUrl {
            why: "it does not parse as a postgres:// URL or a key=value connection string".into(),
        })?;
        // An unreachable database fails the command instead of hanging it.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let location = describe(&config);
        // Verified: a pooled connection a database restart cut is found out
        // (one empty query) and replaced before use, not failed on.
        let pooling = ManagerConfig { recycling_method: RecyclingMethod::Verified };
        let manager = match tls.connector()? {
            Some(connector) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Manager::from_config(config, connector, pooling)
            }
            None => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                Manager::from_config(config, NoTls, pooling)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(4)
            .build()
            .map_err(|e| StateError::Database { location: location.clone(), source: Box::new(e) })?;
        let backend = PostgresBackend { pool, location, releases: Arc::default(), abandoned: Arc::default() };
        backend.migrate().await?;
        Ok(backend)
    }

    fn failed(&self) -> impl Fn(tokio_postgres::Error) -> StateError + '_ {
        |source| StateError::Database { location: self.location.clone(), source: Box::new(source) }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StateError> {
        self.pool.get().await.map_err(|e| StateError::Database { location: self.location.clone(), source: Box::new(e) })
    }

    /// Apply the migrations this database lacks, all in one transaction.
    async fn migrate(&self) -> Result<(), StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(self.failed())?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS gpufleet_schema (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(self.failed())?;
        let found: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM gpufleet_schema", &[])
            .await
            .map_err(self.failed())?
            .get(0);
        let known = MIGRATIONS.len() as i32;
        if found > known {
            return Err(StateError::SchemaTooNew { location: self.location.clone(), found, known });
        }
        for (version, sql) in (1..).zip(MIGRATIONS).skip(usize::try_from(found).unwrap_or(0)) {
            tx.batch_execute(sql).await.map_err(self.failed())?;
            tx.execute("INSERT INTO gpufleet_schema (version) VALUES ($1)", &[&version])
                .await
                .map_err(self.failed())?;
        }
        tx.commit().await.map_err(self.failed())
    }

    fn state_at(&self, plan: &str) -> String {
        format!("the state of plan `{plan}` in {}", self.location)
    }

    /// Wait for the releases of dropped leases, so this process never finds
    /// itself in the way of its own next lease.
    async fn released(&self) {
        let pending: Vec<JoinHandle<()>> = self.releases.lock().map(|mut r| r.drain(..).collect()).unwrap_or_default();
        for release in pending {
            let _ = release.await;
        }
    }

    async fn take(&self, name: &str, holder: Holder) -> Result<Box<dyn Lease>, StateError> {
        self.released().await;
        let client = self.client().await?;
        let token = uuid::Uuid::new_v4().to_string();
        let json = serde_json::to_value(&holder).map_err(|e| self.failed_json(e))?;
        let mine = self.abandoned_tokens(name);
        // One statement, so two takers cannot both win: the conflict branch
        // locks the row and re-checks the expiry against its latest version.
        let taken = client
            .query_opt(
                "INSERT INTO gpufleet_leases (name, holder, token, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET holder = $2, token = $3, expires_at = $4
                     WHERE gpufleet_leases.expires_at <= $5 OR gpufleet_leases.token = ANY($6)
                 RETURNING token",
                &[&name, &json, &token, &holder.lease_expires, &holder.since, &mine],
            )
            .await
            .map_err(self.failed())?;
        if taken.is_some() {
            self.forget_abandoned(name);
            return Ok(self.lease(name, token, holder));
        }
        let row = client
            .query_opt("SELECT holder FROM gpufleet_leases WHERE name = $1", &[&name])
            .await
            .map_err(self.failed())?;
        let current: Option<Holder> = row.and_then(|r| serde_json::from_value(r.get(0)).ok());
        Err(match current {
            Some(current) => LockError::HeldShared {
                what: described(name),
                holder: Box::new(current),
                location: self.location.clone(),
            },
            None => LockError::HeldUnreadable { what: described(name), location: self.location.clone() },
        }
        .into())
    }

    fn lease(&self, name: &str, token: String, holder: Holder) -> Box<dyn Lease> {
        Box::new(DatabaseLease { backend: self.clone(), name: name.to_string(), token, holder })
    }

    /// Tokens of `name` this process dropped without releasing.
    fn abandoned_tokens(&self, name: &str) -> Vec<String> {
        let abandoned = self.abandoned.lock().map(|a| a.clone()).unwrap_or_default();
        abandoned.into_iter().filter(|(n, _)| n == name).map(|(_, token)| token).collect()
    }

    fn forget_abandoned(&self, name: &str) {
        if let Ok(mut abandoned) = self.abandoned.lock() {
            abandoned.retain(|(n, _)| n != name);
        }
    }

    fn failed_json(&self, e: serde_json::Error) -> StateError {
        StateError::Database { location: self.location.clone(), source: Box::new(e) }
    }

    /// Add one row of `plan` to an append-only table; committed on return.
    async fn append(&self, insert: &str, plan: &str, entry: &impl serde::Serialize) -> Result<(), StateError> {
        let json = serde_json::to_value(entry).map_err(|e| self.failed_json(e))?;
        let client = self.client().await?;
        client.execute(insert, &[&plan, &json]).await.map_err(self.failed())?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl StateBackend for PostgresBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    async fn load(&self, plan: &str) -> Result<State, StateError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT body FROM gpufleet_states WHERE plan = $1", &[&plan])
            .await
            .map_err(self.failed())?;
        let Some(row) = row else { return Ok(State::new(plan)) };
        let body: serde_json::Value = row.get(0);
        let bytes = serde_json::to_vec(&body).map_err(|e| self.failed_json(e))?;
        parse_stored(&self.state_at(plan), plan, &bytes)
    }

    async fn save(&self, state: &mut State) -> Result<(), StateError> {
        let written = next_stored(state, || self.state_at(&state.plan))?;
        let serials = (i64::try_from(state.serial), i64::try_from(written.serial));
        let (Ok(expected), Ok(next)) = serials else {
            return Err(StateError::SerialExhausted { at: self.state_at(&state.plan), serial: state.serial });
        };
        let body = serde_json::to_value(&written).map_err(|e| self.failed_json(e))?;
        let client = self.client().await?;
        let saved = client
            .execute(
                "INSERT INTO gpufleet_states (plan, serial, body) VALUES ($1, $2, $3)
                 ON CONFLICT (plan) DO UPDATE SET serial = $2, body = $3, saved_at = now()
                     WHERE gpufleet_states.serial = $4",
                &[&state.plan, &next, &body, &expected],
            )
            .await
            .map_err(self.failed())?;
        // No row changed: a first save found a row (stored serials start at
        // 1), or a later one found another serial.
        if saved == 0 {
            let found: i64 = client
                .query_opt("SELECT serial FROM gpufleet_states WHERE plan = $1", &[&state.plan])
                .await
                .map_err(self.failed())?
                .map_or(0, |r| r.get(0));
            return Err(StateError::Conflict {
                plan: state.plan.clone(),
                location: self.location.clone(),
                expected: state.serial,
                found: u64::try_from(found).unwrap_or(0),
            });
        }
        *state = written;
        Ok(())
    }

    async fn list_plans(&self) -> Result<Vec<String>, StateError> {
        let client = self.client().await?;
        let rows = client.query("SELECT plan FROM gpufleet_states ORDER BY plan", &[]).await.map_err(self.failed())?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    async fn lock(&self, plan: &str, holder: Holder) -> Result<Box<dyn Lease>, StateError> {
        self.take(&lock_row(plan), holder).await
    }

    async fn take_over(&self, plan: &str, holder: Holder) -> Result<(Box<dyn Lease>, Option<Holder>), StateError> {
        self.released().await;
        let name = lock_row(plan);
        let mut client = self.client().await?;
        let token = uuid::Uuid::new_v4().to_string();
        let json = serde_json::to_value(&holder).map_err(|e| self.failed_json(e))?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let previous = tx
            .query_opt("SELECT holder FROM gpufleet_leases WHERE name = $1 FOR UPDATE", &[&name])
            .await
            .map_err(self.failed())?
            .and_then(|row| serde_json::from_value(row.get(0)).ok());
        tx.execute(
            "INSERT INTO gpufleet_leases (name, holder, token, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET holder = $2, token = $3, expires_at = $4",
            &[&name, &json, &token, &holder.lease_expires],
        )
        .await
        .map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())?;
        Ok((self.lease(&name, token, holder), previous))
    }

    async fn lead(&self, name: &str, holder: Holder) -> Result<Box<dyn Lease>, StateError> {
        self.take(&format!("leader:{name}"), holder).await
    }

    async fn append_journal(&self, plan: &str, entry: &Entry) -> Result<(), StateError> {
        self.append(JOURNAL_INSERT, plan, entry).await
    }

    async fn journal(&self, plan: &str) -> Result<Vec<Entry>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT entry FROM gpufleet_journal WHERE plan = $1 ORDER BY id", &[&plan])
            .await
            .map_err(self.failed())?;
        // As in the journal file, a row that is not an entry is skipped: the
        // clouds, not the journal, say what exists.
        Ok(rows.into_iter().filter_map(|r| serde_json::from_value(r.get(0)).ok()).collect())
    }

    async fn import(&self, copy: &PlanCopy, replace: bool) -> Result<(), StateError> {
        let plan = &copy.state.plan;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let stored = tx
            .query_opt("SELECT serial FROM gpufleet_states WHERE plan = $1 FOR UPDATE", &[plan])
            .await
            .map_err(self.failed())?;
        if stored.is_some() && !replace {
            return Err(StateError::PlanExists { plan: plan.clone(), location: self.location.clone() });
        }
        for table in ["gpufleet_states", "gpufleet_journal", "gpufleet_history"] {
            tx.execute(&format!("DELETE FROM {table} WHERE plan = $1"), &[plan]).await.map_err(self.failed())?;
        }
        // A state never saved (serial 0) is what loading a missing plan gives.
        if copy.state.serial > 0 {
            let serial = i64::try_from(copy.state.serial)
                .map_err(|_| StateError::SerialExhausted { at: self.state_at(plan), serial: copy.state.serial })?;
            let body = serde_json::to_value(&copy.state).map_err(|e| self.failed_json(e))?;
            tx.execute("INSERT INTO gpufleet_states (plan, serial, body) VALUES ($1, $2, $3)", &[plan, &serial, &body])
                .await
                .map_err(self.failed())?;
        }
        for entry in &copy.journal {
            let json = serde_json::to_value(entry).map_err(|e| self.failed_json(e))?;
            tx.execute(JOURNAL_INSERT, &[plan, &json]).await.map_err(self.failed())?;
        }
        for entry in &copy.history {
            let json = serde_json::to_value(entry).map_err(|e| self.failed_json(e))?;
            tx.execute(HISTORY_INSERT, &[plan, &json]).await.map_err(self.failed())?;
        }
        tx.commit().await.map_err(self.failed())
    }

    async fn append_history(&self, plan: &str, entry: &HistoryEntry) -> Result<(), StateError> {
        self.append(HISTORY_INSERT, plan, entry).await
    }

    /// A row is JSON, but may not be a state: it moves to
    /// `gpufleet_damaged_states`, and the plan starts over (the database
    /// keeps no state before the last save).
    async fn repair(&self, plan: &str, now: DateTime<Utc>) -> Result<Repaired, StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let row = tx
            .query_opt("SELECT body FROM gpufleet_states WHERE plan = $1 FOR UPDATE", &[&plan])
            .await
            .map_err(self.failed())?;
        let Some(row) = row else { return Ok(Repaired::Healthy) };
        let body: serde_json::Value = row.get(0);
        let bytes = serde_json::to_vec(&body).map_err(|e| self.failed_json(e))?;
        match parse_stored(&self.state_at(plan), plan, &bytes) {
            Ok(_) => return Ok(Repaired::Healthy),
            Err(e) if e.is_damage() => {}
            Err(e) => return Err(e),
        }
        tx.execute(
            "INSERT INTO gpufleet_damaged_states (plan, body, kept_at) VALUES ($1, $2, $3)",
            &[&plan, &body, &now],
        )
        .await
        .map_err(self.failed())?;
        tx.execute("DELETE FROM gpufleet_states WHERE plan = $1", &[&plan]).await.map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())?;
        Ok(Repaired::StartedOver { kept: format!("table gpufleet_damaged_states of {}", self.location) })
    }

    async fn close(&self) {
        self.released().await;
    }

    /// Rows that do not parse (edited by hand) are skipped, as in the file.
    async fn history(&self, plan: &str) -> Result<Vec<HistoryEntry>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT entry FROM gpufleet_history WHERE plan = $1 ORDER BY id", &[&plan])
            .await
            .map_err(self.failed())?;
        Ok(rows.into_iter().filter_map(|r| serde_json::from_value(r.get(0)).ok()).collect())
    }
}

/// A lock or leader lease held in the database.
struct DatabaseLease {
    backend: PostgresBackend,
    name: String,
    token: String,
    holder: Holder,
}

#[async_trait::async_trait]
impl Lease for DatabaseLease {
    fn holder(&self) -> &Holder {
        &self.holder
    }

    /// Extend the lease, only if it is still this holder's: a holder that
    /// lost it (paused past its expiry, then taken over) learns so here.
    async fn renew(&mut self, now: DateTime<Utc>, lease: Duration) -> Result<(), StateError> {
        let mut holder = self.holder.clone();
        holder.lease_expires = lease_end(now, lease);
        let json = serde_json::to_value(&holder).map_err(|e| self.backend.failed_json(e))?;
        let client = self.backend.client().await?;
        let renewed = client
            .execute(
                "UPDATE gpufleet_leases SET holder = $3, expires_at = $4 WHERE name = $1 AND token = $2",
                &[&self.name, &self.token, &json, &holder.lease_expires],
            )
            .await
            .map_err(self.backend.failed())?;
        if renewed == 0 {
            return Err(LockError::Lost { what: described(&self.name), location: self.backend.location.clone() }.into());
        }
        self.holder = holder;
        Ok(())
    }
}

impl Drop for DatabaseLease {
    /// Release the lease in the background; the backend's `close` (and its
    /// next lease) waits for it. Without a runtime, or if the process dies
    /// first, the lease expires at its end, as a dead holder's does.
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (backend, name, token) = (self.backend.clone(), self.name.clone(), self.token.clone());
        let release = runtime.spawn(async move {
            let delete = "DELETE FROM gpufleet_leases WHERE name = $1 AND token = $2";
            let released = match backend.client().await {
                Ok(client) => client.execute(delete, &[&name, &token]).await.is_ok(),
                Err(_) => false,
            };
            if !released && let Ok(mut abandoned) = backend.abandoned.lock() {
                abandoned.push((name, token));
            }
        });
        if let Ok(mut releases) = self.backend.releases.lock() {
            releases.push(release);
        }
    }
}

/// The lease row of `plan`'s lock; leader leases are rows named as they are.
fn lock_row(plan: &str) -> String {
    format!("lock:{plan}")
}

/// A lease row's name as messages say it.
fn described(name: &str) -> String {
    match name.strip_prefix("lock:") {
        Some(plan) => format!("the lock of plan `{plan}`"),
        None => format!("the leader lease `{name}`"),
    }
}

/// `postgres://USER@HOST:PORT/DATABASE`: where the state is, without the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(dir)) => dir.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().map(|p| format!(":{p}")).unwrap_or_default();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{host}{port}/{db}")
}
