//! The PostgreSQL state backend against a real server (a throwaway cluster
//! per test, see `common::postgres`): compare-and-swap saves, leases that
//! expire and fence, journal and history rows, migrations that do not race,
//! a database restart, and a password that never shows.

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::postgres::{PASSWORD, Postgres};
use gpufleet::state::journal::{Entry, Event};
use gpufleet::state::lock::{Holder, LockError};
use gpufleet::state::postgres::PostgresBackend;
use gpufleet::state::{State, StateBackend, StateError};
use std::time::Duration;

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap()
}

fn holder(command: &str, minute: u32) -> Holder {
    Holder::this_process(command, at(minute), Duration::from_secs(5 * 60))
}

#[tokio::test]
async fn saves_are_compare_and_swap_and_a_stale_writer_changes_nothing() {
    let pg = Postgres::start();
    let backend = PostgresBackend::connect(&pg.url).await.unwrap();
    let mut state = backend.load("demo").await.unwrap();
    assert_eq!(state.serial, 0);
    let mut racing_first_save = state.clone();
    backend.save(&mut state).await.unwrap();
    backend.save(&mut state).await.unwrap();
    assert_eq!(state.serial, 2);
    assert_eq!(backend.load("demo").await.unwrap(), state);

    let err = backend.save(&mut racing_first_save).await.unwrap_err();
    assert!(matches!(err, StateError::Conflict { expected: 0, found: 2, .. }), "{err}");
    let mut stale = state.clone();
    backend.save(&mut state).await.unwrap();
    stale.shortages.clear();
    let err = backend.save(&mut stale).await.unwrap_err();
    assert!(matches!(err, StateError::Conflict { expected: 2, found: 3, .. }), "{err}");
    assert_eq!(backend.load("demo").await.unwrap(), state);
    assert_eq!(backend.list_plans().await.unwrap(), ["demo"]);
}

#[tokio::test]
async fn concurrent_first_saves_and_first_connects_leave_exactly_one_winner() {
    let pg = Postgres::start();
    // Ten first connects at once: the migrations run once, under their lock.
    let backends = futures::future::try_join_all((0..10).map(|_| PostgresBackend::connect(&pg.url))).await.unwrap();
    let saves = backends.iter().map(|b| async move {
        let mut state = State::new("race");
        b.save(&mut state).await.map(|()| state.lineage)
    });
    let results = futures::future::join_all(saves).await;
    let winners: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let stored = backends[0].load("race").await.unwrap();
    assert_eq!((&stored.lineage, stored.serial), (winners[0], 1));
}

#[tokio::test]
async fn a_lease_is_exclusive_until_it_ends_and_a_holder_that_lost_it_cannot_renew() {
    let pg = Postgres::start();
    let backend = PostgresBackend::connect(&pg.url).await.unwrap();
    let mut first = backend.lock("demo", holder("apply", 0)).await.unwrap();

    let err = backend.lock("demo", holder("apply", 1)).await.err().unwrap();
    match &err {
        StateError::Lock(LockError::HeldShared { holder, .. }) => assert_eq!(holder.command, "apply"),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("lease until 00:05:00 UTC"), "{err}");
    // A renewal moves the end: still held at minute 7.
    first.renew(at(4), Duration::from_secs(5 * 60)).await.unwrap();
    assert!(backend.lock("demo", holder("apply", 7)).await.is_err());
    // Other plans and leader leases are other rows.
    let _leader = backend.lead("demo-rebalance", holder("rebalance --watch", 7)).await.unwrap();
    let _other = backend.lock("other", holder("apply", 7)).await.unwrap();

    // The holder paused past its lease: another run takes over at minute 10,
    // and the paused one learns at its next renewal that it must stop.
    let _second = backend.lock("demo", holder("apply", 10)).await.unwrap();
    let lost = first.renew(at(11), Duration::from_secs(5 * 60)).await.unwrap_err();
    assert!(matches!(lost, StateError::Lock(LockError::Lost { .. })), "{lost}");
}

#[tokio::test]
async fn journal_and_history_rows_round_trip_and_open_intents_are_those_without_outcome() {
    let pg = Postgres::start();
    let backend = PostgresBackend::connect(&pg.url).await.unwrap();
    let placement = gpufleet::model::Placement {
        cloud: gpufleet::model::Cloud::Aws,
        region: "us-east-1".into(),
        zone: None,
        instance_type: "p5.48xlarge".into(),
    };
    let entry = |token: &str, event: Event| Entry { at: at(0), run: "r1".into(), token: token.into(), event };
    let create = |count, replaces: &[&str]| Event::CreateIntent {
        fleet: "f".into(),
        placement: placement.clone(),
        count,
        min_count: 1,
        replaces: replaces.iter().map(|id| id.to_string()).collect(),
    };
    backend.append_journal("demo", &entry("t1", create(2, &[]))).await.unwrap();
    backend.append_journal("demo", &entry("t1", Event::Done { instance_ids: vec!["i-1".into()] })).await.unwrap();
    backend.append_journal("demo", &entry("t2", create(1, &["i-old"]))).await.unwrap();
    backend.append_journal("other", &entry("t3", create(1, &[]))).await.unwrap();
    assert_eq!(backend.open_intents("demo").await.unwrap(), [entry("t2", create(1, &["i-old"]))]);
    let moves = backend.unfinished_moves("demo").await.unwrap();
    assert_eq!(
        moves.iter().map(|m| (m.replaces.clone(), m.created.clone())).collect::<Vec<_>>(),
        [(vec!["i-old".to_string()], None)]
    );

    assert!(backend.history("demo").await.unwrap().is_empty());
    let run = gpufleet::state::history::HistoryEntry {
        at: at(1),
        run: "r1".into(),
        command: "apply".into(),
        host: "ci".into(),
        pid: 7,
        serial: 3,
        created: 2,
        deleted: 0,
        moves_started: 0,
        moves_finished: 0,
        moves: Vec::new(),
        note: None,
        nodes: Default::default(),
        shortages: vec!["aws us-east-1a p5.48xlarge: InsufficientInstanceCapacity".into()],
        cost_per_hour: 110.08,
        outcome: "ok".into(),
    };
    backend.append_history("demo", &run).await.unwrap();
    assert_eq!(backend.history("demo").await.unwrap(), [run]);
}

#[tokio::test]
async fn a_database_restart_fails_calls_in_between_and_the_backend_recovers() {
    let pg = Postgres::start();
    let backend = PostgresBackend::connect(&pg.url).await.unwrap();
    let mut state = backend.load("demo").await.unwrap();
    backend.save(&mut state).await.unwrap();
    pg.restart();
    // Connections the restart cut are found out and replaced by the pool
    // before use: no call sees the cut, and none sees torn state.
    assert_eq!(backend.load("demo").await.unwrap(), state);
}

/// With sslmode, the connection is TLS and the server's certificate is
/// verified: against `sslrootcert`, or the system's roots, which do not know
/// the test's CA.
#[tokio::test]
async fn tls_connections_verify_the_server_and_are_encrypted() {
    let (pg, tls) = Postgres::start_with_tls();
    let ca = tls.ca.display().to_string().replace('/', "%2F");
    let verified = format!("{}?sslmode=verify-full&sslrootcert={ca}", tls.url);
    let backend = PostgresBackend::connect(&verified).await.unwrap();
    let mut state = backend.load("demo").await.unwrap();
    backend.save(&mut state).await.unwrap();
    // The server's view, over its Unix socket: the pooled TCP session is encrypted.
    let (client, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let encrypted: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND usename = 'gpufleet'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "no TLS session");
    drop(backend);

    let unknown_ca = PostgresBackend::connect(&format!("{}?sslmode=require", tls.url)).await.err().unwrap();
    let said = format!("{unknown_ca}");
    assert!(said.contains("certificate") || said.contains("no trusted CA"), "{said}");
    assert!(!said.contains(PASSWORD), "{said}");
}

/// A lease dropped while the database was down stays a row until it ends:
/// the process that dropped it may take it again at once, nobody else may.
#[tokio::test]
async fn a_lease_dropped_during_an_outage_is_free_for_its_process_only() {
    let pg = Postgres::start();
    let backend = PostgresBackend::connect(&pg.url).await.unwrap();
    let other = PostgresBackend::connect(&pg.url).await.unwrap();
    let lease = backend.lock("demo", holder("apply", 0)).await.unwrap();
    pg.stop();
    drop(lease);
    backend.close().await;
    pg.start_again();
    let held = other.lock("demo", holder("apply", 1)).await.err().unwrap();
    assert!(matches!(held, StateError::Lock(LockError::HeldShared { .. })), "{held}");
    let again = backend.lock("demo", holder("apply", 1)).await;
    assert!(again.is_ok(), "{:?}", again.err());
}

#[tokio::test]
async fn the_password_appears_in_no_message() {
    let pg = Postgres::start();
    let backend = PostgresBackend::connect(&pg.url).await.unwrap();
    let location = backend.location();
    assert!(location.starts_with("postgres://gpufleet@/tmp/gpufleet-pg"), "{location}");
    assert!(!location.contains(PASSWORD));

    let wrong = pg.url.replace(PASSWORD, &format!("{PASSWORD}-wrong"));
    let err = PostgresBackend::connect(&wrong).await.err().unwrap();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("password authentication failed"), "{shown}");
    assert!(!shown.contains(PASSWORD), "{shown}");

    let garbled = format!("postgres://gpufleet:{PASSWORD}@[::1/x");
    let err = PostgresBackend::connect(&garbled).await.err().unwrap();
    assert!(!format!("{err} {err:?}").contains(PASSWORD), "{err}");
}

#[test]
fn the_cli_keeps_state_locks_and_history_in_the_database_and_never_shows_the_password() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("home.toml");
    std::fs::write(&plan, common::home_plan("home")).unwrap();
    let (plan, local) = (plan.to_str().unwrap(), dir.path().join("local"));
    // The embedded simulator keeps its world in the state directory; state goes to the database.
    let with = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--state".into(), pg.url.clone(), "--state-dir".into(), local.display().to_string()]);
        all
    };
    let run = |args: Vec<String>, expect: i32| {
        let out = common::run(&args.iter().map(String::as_str).collect::<Vec<_>>(), expect);
        let shown = format!("{}{}", common::stdout(&out), common::stderr(&out));
        assert!(!shown.contains(PASSWORD), "the password leaked:\n{shown}");
        shown
    };
    run(with(&["apply", plan, "--sim", "--auto-approve"]), 0);
    run(with(&["plan", plan, "--sim", "--detailed-exitcode"]), 0);
    let listed = run(with(&["state", "list", "--json"]), 0);
    let instances: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(instances.len(), 4, "{listed}");
    assert!(!local.join("home.json").exists(), "the state is in the database, not the directory");
    // Each command released its lock: a third runs at once, well within the first lease.
    run(with(&["destroy", plan, "--sim", "--auto-approve"]), 0);
    let empty = run(with(&["state", "list"]), 0);
    assert!(empty.starts_with("No instances in state under postgres://gpufleet@"), "{empty}");
    let history = run(with(&["history", plan, "--json"]), 0);
    let runs: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap();
    assert_eq!(runs.iter().map(|r| r["command"].as_str().unwrap()).collect::<Vec<_>>(), ["apply", "destroy"]);

    let refused = run(vec!["state".into(), "list".into(), "--state".into(), pg.url.replace(PASSWORD, "wrong")], 1);
    assert!(refused.contains("password authentication failed"), "{refused}");

    // Nor in the most verbose logs, the rows, or the files the commands wrote.
    let args = with(&["apply", plan, "--sim", "--auto-approve", "--json"]);
    let traced = common::command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let logs = common::stderr(&traced);
    assert!(traced.status.success() && logs.contains("TRACE"), "{logs}");
    assert!(!logs.contains(PASSWORD) && !common::stdout(&traced).contains(PASSWORD), "the password leaked into logs");
    let rows: String = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let (client, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let all = "SELECT coalesce(string_agg(row, ' '), '') FROM (
                       SELECT body::text AS row FROM gpufleet_states UNION ALL
                       SELECT entry::text FROM gpufleet_journal UNION ALL
                       SELECT entry::text FROM gpufleet_history UNION ALL
                       SELECT holder::text FROM gpufleet_leases) AS t";
        client.query_one(all, &[]).await.unwrap().get(0)
    });
    assert!(rows.contains("i-") && !rows.contains(PASSWORD), "{rows}");
    for file in std::fs::read_dir(&local).unwrap() {
        let path = file.unwrap().path();
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains(PASSWORD), "the password is in {}", path.display());
    }
}

#[test]
fn state_pushed_to_the_database_and_pulled_back_is_identical_and_push_refuses_to_overwrite() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("home.toml");
    std::fs::write(&plan, common::home_plan("home")).unwrap();
    let (plan, local, back) = (plan.to_str().unwrap(), dir.path().join("local"), dir.path().join("back"));
    let local_dir = local.to_str().unwrap();
    common::run(&["apply", plan, "--sim", "--auto-approve", "--state-dir", local_dir], 0);
    common::run(&["destroy", plan, "--sim", "--auto-approve", "--state-dir", local_dir], 0);
    common::run(&["apply", plan, "--sim", "--auto-approve", "--state-dir", local_dir], 0);

    let pushed = common::run(&["state", "push", "--to", &pg.url, "--state-dir", local_dir], 0);
    let said = common::stdout(&pushed);
    assert!(said.contains("Copied plan `home` (serial "), "{said}");
    assert!(!said.contains(PASSWORD), "{said}");
    let again = common::run(&["state", "push", "--to", &pg.url, "--state-dir", local_dir], 1);
    assert!(
        common::stderr(&again).contains("plan `home` already has state in postgres://gpufleet@"),
        "{}",
        common::stderr(&again)
    );
    assert!(!common::stderr(&again).contains(PASSWORD));
    // The refused push released its locks: a forced one goes through at once.
    common::run(&["state", "push", "--to", &pg.url, "--force", "--state-dir", local_dir], 0);
    common::run(&["state", "pull", "--from", &pg.url, "--state-dir", back.to_str().unwrap()], 0);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (original, round_trip) = runtime.block_on(async {
        let read = |dir| async move {
            gpufleet::state::PlanCopy::read(&gpufleet::state::LocalBackend::new(dir), "home").await.unwrap()
        };
        (read(local.clone()).await, read(back.clone()).await)
    });
    assert!(original.state.serial > 0 && original.journal.len() > 4 && original.history.len() == 3, "{original:?}");
    assert_eq!(round_trip, original, "a round trip through the database is lossless");
    let missing =
        common::run(&["state", "pull", "--from", &pg.url, "--plan", "nope", "--state-dir", back.to_str().unwrap()], 1);
    assert!(
        common::stderr(&missing).contains("plan `nope` has no state in postgres://"),
        "{}",
        common::stderr(&missing)
    );
}

/// A row is JSON, but a hand edit can make it another plan's state (one
/// whose `plan` is a path, which `state pull` then wrote outside the state
/// directory) or no state at all: it is refused naming the plan, and
/// `repair` moves it aside and starts over.
#[tokio::test]
async fn a_row_that_is_not_this_plans_state_is_refused_and_repair_keeps_it_aside() {
    let pg = Postgres::start();
    let backend = PostgresBackend::connect(&pg.url).await.unwrap();
    let mut state = backend.load("demo").await.unwrap();
    backend.save(&mut state).await.unwrap();
    let (client, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .execute("UPDATE gpufleet_states SET body = jsonb_set(body, '{plan}', '\"../../evil-state\"')", &[])
        .await
        .unwrap();
    let err = backend.load("demo").await.unwrap_err();
    assert!(matches!(err, StateError::OtherPlan { .. }), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let local = gpufleet::state::LocalBackend::new(dir.path().join("state"));
    assert!(gpufleet::state::PlanCopy::read(&backend, "demo").await.is_err());
    assert!(!dir.path().join("evil-state.json").exists() && local.list_plans().await.unwrap().is_empty());

    let repaired = backend.repair("demo", at(1)).await.unwrap();
    assert!(matches!(repaired, gpufleet::state::Repaired::StartedOver { .. }), "{repaired:?}");
    let fresh = backend.load("demo").await.unwrap();
    assert!(fresh.serial == 0 && fresh.lineage != state.lineage);
    let kept: i64 = client.query_one("SELECT count(*) FROM gpufleet_damaged_states", &[]).await.unwrap().get(0);
    assert_eq!(kept, 1);
    assert_eq!(backend.repair("demo", at(2)).await.unwrap(), gpufleet::state::Repaired::Healthy);
}
