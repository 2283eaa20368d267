//! The store suite on the embedded SQLite backend, plus what only SQLite has: the file,
//! its pragmas, its schema version, and surviving `kill -9` of the writing process.

mod suite;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bizra_ledger::Hash32;
use bizra_store::{AnyStore, SqliteConfig, SqliteStore, Store, StoreError};
use sqlx::Connection;
use suite::{batch, key, store_suite, Harness};

/// A temporary directory holding one store file; every `open` reaches the same file.
struct SqliteHarness {
    dir: tempfile::TempDir,
}

impl SqliteHarness {
    fn new() -> SqliteHarness {
        SqliteHarness {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("data").join("node0.db")
    }
}

impl Harness for SqliteHarness {
    // Through AnyStore, so the dispatch the node uses is what the suite exercises.
    type S = AnyStore;
    async fn open(&self) -> AnyStore {
        AnyStore::open_sqlite(self.path(), SqliteConfig::default())
            .await
            .expect("open store")
    }
}

store_suite!(SqliteHarness::new());

#[tokio::test]
async fn file_is_wal_and_at_the_current_schema() {
    let h = SqliteHarness::new();
    let store = SqliteStore::open(h.path()).await.unwrap();
    assert!(h.path().exists());
    assert_eq!(
        store.schema_version().await.unwrap(),
        bizra_store::sqlite::SCHEMA_VERSION
    );
    assert_eq!(store.path(), h.path());
    // journal_mode is a property of the file: any connection sees it.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", h.path().display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    conn.close().await.unwrap();
    store.close().await;
    // Opening again runs no migration twice.
    let store = SqliteStore::open(h.path()).await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        bizra_store::sqlite::SCHEMA_VERSION
    );
}

/// A crash between the transactions of a large block's placement leaves a block with
/// `placed = 0` and some of its attestations placed. It was never acknowledged, so the
/// next open removes it and its attestations are pending again; storing it again works.
#[tokio::test]
async fn a_half_placed_block_is_undone_at_open() {
    let h = SqliteHarness::new();
    let store = SqliteStore::open(h.path()).await.unwrap();
    let items = batch(&key(1), "alice", 0, 20);
    store.insert_attestations(&items).await.unwrap();
    let genesis = suite::genesis_block();
    store.insert_block(&genesis, 1).await.unwrap();
    let ids: Vec<Hash32> = items.iter().map(|i| i.digest).collect();
    let block = suite::propose(1, vec![genesis.hash], ids[..12].to_vec(), 10);
    store.insert_block(&block, 10).await.unwrap();
    store.close().await;

    // What the crash leaves: the row unfinished, the second half of the placement and
    // its share of the counter not written.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", h.path().display()))
        .await
        .unwrap();
    sqlx::query("UPDATE blocks SET placed = 0 WHERE hash = ?1")
        .bind(block.hash.as_bytes().as_slice())
        .execute(&mut conn)
        .await
        .unwrap();
    for d in &ids[6..12] {
        sqlx::query(
            "UPDATE attestations SET block_hash = NULL, block_index = NULL WHERE digest = ?1",
        )
        .bind(d.as_bytes().as_slice())
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::query("UPDATE counters SET value = value + 6 WHERE name = 'pending_attestations'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let store = SqliteStore::open(h.path()).await.unwrap();
    assert!(store.get_block(&block.hash).await.unwrap().is_none());
    assert_eq!(store.count_pending_attestations().await.unwrap(), 20);
    assert_eq!(store.pending_attestations(100).await.unwrap(), ids);
    assert_eq!(
        store.insert_block(&block, 11).await.unwrap(),
        bizra_store::BlockInsert::Inserted
    );
    assert_eq!(store.count_pending_attestations().await.unwrap(), 8);
}

/// A half-placed block may hold the first placement of an attestation that the ledger
/// settled meanwhile through another block: undoing the block at open moves that one to
/// where the ledger met it (it must never be pending again) and returns the rest.
#[tokio::test]
async fn undoing_a_half_placed_block_keeps_settled_attestations_placed() {
    let h = SqliteHarness::new();
    let store = SqliteStore::open(h.path()).await.unwrap();
    let items = batch(&key(1), "alice", 0, 3);
    store.insert_attestations(&items).await.unwrap();
    let ids: Vec<Hash32> = items.iter().map(|i| i.digest).collect();
    let genesis = suite::genesis_block();
    store.insert_block(&genesis, 1).await.unwrap();
    let half = suite::propose(1, vec![genesis.hash], ids[..2].to_vec(), 10);
    store.insert_block(&half, 10).await.unwrap();
    let other = suite::propose_by(201, 0, 1, vec![genesis.hash], vec![ids[0]], 11);
    store.insert_block(&other, 11).await.unwrap();
    store
        .commit(&bizra_store::CommitBatch {
            blocks: vec![other.hash],
            appended: vec![suite::ledger_row(0, ids[0], &other, 0)],
            state: serde_json::json!({}),
            at_ms: 20,
            ..Default::default()
        })
        .await
        .unwrap();
    store.close().await;

    let url = format!("sqlite://{}", h.path().display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE blocks SET placed = 0 WHERE hash = ?1")
        .bind(half.hash.as_bytes().as_slice())
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let store = SqliteStore::open(h.path()).await.unwrap();
    assert!(store.get_block(&half.hash).await.unwrap().is_none());
    assert_eq!(store.pending_attestations(10).await.unwrap(), ids[1..]);
    assert_eq!(store.count_pending_attestations().await.unwrap(), 2);
    let settled = store.get_attestation(&ids[0]).await.unwrap().unwrap();
    assert_eq!(settled.status, bizra_store::AttestationStatus::Finalized);
    store.close().await;
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let placed: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT block_hash FROM attestations WHERE digest = ?1")
            .bind(ids[0].as_bytes().as_slice())
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(placed.as_deref(), Some(other.hash.as_bytes().as_slice()));
    conn.close().await.unwrap();
}

/// The embedded store takes an own block's slot in the first of its transactions. A crash
/// before the last removes the block at the next open, and the slot stays taken (the
/// block was never returned to be signed or sent, so that errs on the side of not
/// signing): another block for the slot is refused, the same block is stored again.
#[tokio::test]
async fn a_crash_mid_own_block_keeps_its_slot_taken() {
    let h = SqliteHarness::new();
    let store = SqliteStore::open(h.path()).await.unwrap();
    let items = batch(&key(1), "alice", 0, 200);
    store.insert_attestations(&items).await.unwrap();
    let ids: Vec<Hash32> = items.iter().map(|i| i.digest).collect();
    let genesis = suite::genesis_block();
    store.insert_block(&genesis, 1).await.unwrap();
    let own = suite::propose(1, vec![genesis.hash], ids.clone(), 10);
    assert_eq!(
        store.insert_own_block(&own, 10, None).await.unwrap(),
        bizra_store::Signing::First
    );
    store.close().await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", h.path().display()))
        .await
        .unwrap();
    sqlx::query("UPDATE blocks SET placed = 0 WHERE hash = ?1")
        .bind(own.hash.as_bytes().as_slice())
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let store = SqliteStore::open(h.path()).await.unwrap();
    assert!(store.get_block(&own.hash).await.unwrap().is_none());
    assert_eq!(store.count_pending_attestations().await.unwrap(), 200);
    let other = suite::propose(1, vec![genesis.hash], ids[..5].to_vec(), 11);
    assert_eq!(
        store.insert_own_block(&other, 11, None).await.unwrap(),
        bizra_store::Signing::Conflict { signed: own.hash }
    );
    assert_eq!(
        store.insert_own_block(&own, 12, None).await.unwrap(),
        bizra_store::Signing::Again
    );
    assert_eq!(store.count_pending_attestations().await.unwrap(), 0);
}

/// A peer block larger than one placement transaction: its attestations go in with the
/// first transaction (the block row and its first placements), its QC with the last. A
/// crash in between leaves the block half placed and uncertified; the next open removes
/// it and its placements, and keeps the attestations exactly as `insert_block_attestations`
/// would have stored them (new ones counted and pending, a contested one contested). The
/// same call again then stores the block and its QC, every attestation `Known`.
#[tokio::test]
async fn a_crash_mid_peer_block_keeps_only_its_attestations() {
    use bizra_store::{AttestationStatus, BlockAttestation, BlockInsert, PeerBlockInsert};
    let h = SqliteHarness::new();
    let store = SqliteStore::open(h.path()).await.unwrap();
    let x = suite::new_att(&suite::signed(&key(1), "alice", 7, 0), 1);
    store
        .insert_attestations(std::slice::from_ref(&x))
        .await
        .unwrap();
    let genesis = suite::genesis_block();
    store.insert_block(&genesis, 1).await.unwrap();
    // 199 new attestations, then one with x's key and nonce (contested).
    let mut items = batch(&key(2), "bob", 0, 199);
    items.push(suite::new_att(&suite::signed(&key(1), "alice", 7, 1), 2));
    let ids: Vec<Hash32> = items.iter().map(|i| i.digest).collect();
    let block = suite::propose_by(201, 0, 1, vec![genesis.hash], ids.clone(), 10);
    let qc = suite::qc_for(block.hash);
    let out = store
        .insert_peer_block(&block, &items, Some(&qc), 10, 20)
        .await
        .unwrap();
    let mut outcomes = vec![BlockAttestation::Stored; 199];
    outcomes.push(BlockAttestation::Contested { owner: x.digest });
    assert_eq!(
        out,
        PeerBlockInsert {
            attestations: outcomes,
            block: BlockInsert::Inserted,
            newly_certified: true
        }
    );
    store.close().await;

    // What a crash after the first transaction leaves: the row unfinished and without its
    // QC, placements from index 128 on and their share of the counter not written.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", h.path().display()))
        .await
        .unwrap();
    sqlx::query("UPDATE blocks SET placed = 0, qc = NULL, certified_at_ms = NULL WHERE hash = ?1")
        .bind(block.hash.as_bytes().as_slice())
        .execute(&mut conn)
        .await
        .unwrap();
    let unplaced = sqlx::query(
        "UPDATE attestations SET block_hash = NULL, block_index = NULL \
         WHERE block_hash = ?1 AND block_index >= 128",
    )
    .bind(block.hash.as_bytes().as_slice())
    .execute(&mut conn)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(unplaced, 71);
    sqlx::query("UPDATE counters SET value = value + 71 WHERE name = 'pending_attestations'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let store = SqliteStore::open(h.path()).await.unwrap();
    assert!(store.get_block(&block.hash).await.unwrap().is_none());
    assert_eq!(store.count_attestations().await.unwrap(), 200);
    assert_eq!(store.count_pending_attestations().await.unwrap(), 200);
    let mut pending = vec![x.digest];
    pending.extend(&ids[..199]);
    assert_eq!(store.pending_attestations(1000).await.unwrap(), pending);
    let contested = store.get_attestation(&ids[199]).await.unwrap().unwrap();
    assert_eq!(
        (contested.status, contested.block),
        (AttestationStatus::Accepted, None)
    );

    let again = store
        .insert_peer_block(&block, &items, Some(&qc), 30, 40)
        .await
        .unwrap();
    assert_eq!(
        again,
        PeerBlockInsert {
            attestations: vec![BlockAttestation::Known; 200],
            block: BlockInsert::Inserted,
            newly_certified: true
        }
    );
    let stored = store.get_block(&block.hash).await.unwrap().unwrap();
    assert_eq!(
        (stored.created_at_ms, stored.certified_at_ms, stored.qc),
        (30, Some(40), Some(qc))
    );
    assert_eq!(store.count_attestations().await.unwrap(), 200);
    assert_eq!(
        store.pending_attestations(1000).await.unwrap(),
        vec![x.digest]
    );
    assert_eq!(store.count_pending_attestations().await.unwrap(), 1);
}

/// Two inserts of one block that takes several transactions, at the same time (a
/// validator's handler whose caller went away, and its catch-up): one stores it, the other
/// finds it stored; neither mistakes the other's half-placed block for a failed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_of_one_large_block_agree() {
    let h = SqliteHarness::new();
    let store = SqliteStore::open(h.path()).await.unwrap();
    let items = batch(&key(1), "alice", 0, 1_500);
    store.insert_attestations(&items).await.unwrap();
    let genesis = suite::genesis_block();
    store.insert_block(&genesis, 1).await.unwrap();
    let ids: Vec<Hash32> = items.iter().map(|i| i.digest).collect();
    let block = suite::propose(1, vec![genesis.hash], ids, 10);
    let (a, b) = tokio::join!(
        tokio::spawn({
            let (s, b) = (store.clone(), block.clone());
            async move { s.insert_block(&b, 10).await }
        }),
        tokio::spawn({
            let (s, b) = (store.clone(), block.clone());
            async move { s.insert_block(&b, 11).await }
        }),
    );
    let mut outcomes = vec![a.unwrap().unwrap(), b.unwrap().unwrap()];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    use bizra_store::BlockInsert;
    assert_eq!(
        outcomes,
        vec![BlockInsert::AlreadyStored, BlockInsert::Inserted]
    );
    assert_eq!(store.count_pending_attestations().await.unwrap(), 0);
    let last = store
        .get_attestation(&block.attestation_ids[1_499])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        last.block.map(|b| (b.hash, b.index)),
        Some((block.hash, 1_499))
    );
}

/// A file at schema version 1 opens, migrates through every later version, and keeps its
/// blocks as placed. (Its block has this build's header version: the migrations are
/// checked here, not the header version, which the next test refuses.)
#[tokio::test]
async fn a_schema_version_1_file_is_migrated() {
    let h = SqliteHarness::new();
    std::fs::create_dir_all(h.path().parent().unwrap()).unwrap();
    let mut conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", h.path().display()))
            .await
            .unwrap();
    sqlx::query(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY NOT NULL, \
         name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::raw_sql(include_str!("../migrations/sqlite/0001_init.sql"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO schema_version VALUES (1, 'init', 0)")
        .execute(&mut conn)
        .await
        .unwrap();
    let genesis = suite::genesis_block();
    sqlx::query(
        "INSERT INTO blocks (hash, height, timestamp_ms, header, attestation_ids, created_at_ms) \
         VALUES (?1, 0, 0, ?2, x'', 0)",
    )
    .bind(genesis.hash.as_bytes().as_slice())
    .bind(serde_json::to_string(&genesis.header).unwrap())
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let store = SqliteStore::open(h.path()).await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        bizra_store::sqlite::SCHEMA_VERSION
    );
    let kept = store.get_block(&genesis.hash).await.unwrap().expect("kept");
    assert_eq!(kept.block, genesis);
}

/// A file that a build of block header version 1 wrote is refused at open with a message
/// that names both versions (docs/protocol.md §3.1), and left as it was: no migration
/// ran, so that build can still open it.
#[tokio::test]
async fn a_file_of_block_header_version_1_is_refused_unchanged() {
    let h = SqliteHarness::new();
    bizra_testkit::v1_store::write_sqlite(&h.path())
        .await
        .expect("a version-1 file");
    let err = SqliteStore::open(h.path()).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::HeaderVersion {
            place: "data directory",
            found: 1,
            expected: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "this data directory holds block headers of version 1; this node reads and writes \
         version 2; start it with a new data directory (no migration from version 1)"
    );
    assert_eq!(
        bizra_testkit::v1_store::sqlite_shape(&h.path())
            .await
            .expect("readable"),
        (bizra_testkit::v1_store::SQLITE_SCHEMA_VERSION, false)
    );
    // Refused again, not half migrated by the first attempt.
    assert_eq!(SqliteStore::open(h.path()).await.unwrap_err(), err);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let h = SqliteHarness::new();
    SqliteStore::open(h.path()).await.unwrap().close().await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", h.path().display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO schema_version (version, name, applied_at_ms) VALUES (999, 'future', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let err = SqliteStore::open(h.path()).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_an_error_not_a_panic() {
    let h = SqliteHarness::new();
    std::fs::create_dir_all(h.path().parent().unwrap()).unwrap();
    std::fs::write(h.path(), vec![0x5a; 8192]).unwrap();
    let err = SqliteStore::open(h.path()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt(_) | StoreError::Unavailable(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn reads_do_not_wait_for_a_writer_and_a_locked_file_is_unavailable() {
    let h = SqliteHarness::new();
    let store = SqliteStore::open_with(
        h.path(),
        SqliteConfig {
            readers: 2,
            busy_timeout: Duration::from_millis(200),
            acquire_timeout: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    let items = batch(&key(1), "alice", 0, 10);
    store.insert_attestations(&items).await.unwrap();
    assert_eq!(store.pool_stats().max_size, 3);

    // Another process-like connection takes the file's write lock and keeps it.
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", h.path().display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    sqlx::query("INSERT INTO meta (key, value) VALUES ('uncommitted', 'x')")
        .execute(&mut other)
        .await
        .unwrap();

    // WAL readers answer from the last committed state. A reader blocked by the lock
    // would fail with SQLITE_BUSY after busy_timeout, so success is the proof.
    assert_eq!(store.count_attestations().await.unwrap(), 10);
    assert!(store
        .get_attestation(&items[0].digest)
        .await
        .unwrap()
        .is_some());
    assert_eq!(store.get_meta("uncommitted").await.unwrap(), None);

    // A write waits busy_timeout, then fails as Unavailable (a 503), writing nothing.
    let err = store
        .insert_attestations(&batch(&key(1), "alice", 10, 5))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");

    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    // The lock gone, the same store writes again.
    let out = store
        .insert_attestations(&batch(&key(1), "alice", 10, 5))
        .await
        .unwrap();
    assert_eq!(out.len(), 5);
    assert_eq!(store.count_attestations().await.unwrap(), 15);
}

// ---------------------------------------------------------------- kill -9

const CRASH_DB: &str = "BIZRA_STORE_CRASH_CHILD_DB";

/// The child side of `acknowledged_writes_survive_kill_9`: does nothing in a normal run.
/// With the variable set it writes batches forever (bounded), printing each digest only
/// after its batch's commit returned, until the parent kills it.
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CRASH_DB) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = SqliteStore::open(PathBuf::from(path)).await.unwrap();
        let mut out = std::io::stdout().lock();
        let started = Instant::now();
        for i in 0..100_000u64 {
            if started.elapsed() > Duration::from_secs(60) {
                break;
            }
            let items = batch(&key(9), "crash", i * 10, 10);
            store.insert_attestations(&items).await.unwrap();
            for item in &items {
                writeln!(out, "ACK {}", item.digest).unwrap();
            }
            out.flush().unwrap();
        }
    });
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let h = SqliteHarness::new();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_DB, h.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acked: Vec<Hash32> = Vec::new();
    // Kill it mid-load, once it has acknowledged a good number of rows.
    while acked.len() < 500 {
        let Some(line) = lines.next() else { break };
        if let Some(d) = line.unwrap().strip_prefix("ACK ") {
            acked.push(d.parse().unwrap());
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix: no destructors, no close, no checkpoint.
    child.wait().unwrap();
    // Acknowledgements already in the pipe when it died count too.
    for line in lines {
        if let Some(d) = line.unwrap().strip_prefix("ACK ") {
            acked.push(d.parse().unwrap());
        }
    }
    assert!(
        acked.len() >= 500,
        "child acknowledged only {}",
        acked.len()
    );

    let store = SqliteStore::open(h.path()).await.unwrap();
    let count = store.count_attestations().await.unwrap();
    assert!(count >= acked.len() as u64, "{count} < {}", acked.len());
    for d in &acked {
        assert!(
            store.get_attestation(d).await.unwrap().is_some(),
            "acknowledged {d} lost"
        );
    }
    // The counters moved in the same transactions as the rows: still exact.
    let mut walked = 0u64;
    let mut cursor = None;
    loop {
        let page = store.list_attestations(None, cursor, 1000).await.unwrap();
        walked += page.items.len() as u64;
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(walked, count);
    assert_eq!(store.count_pending_attestations().await.unwrap(), count);
}
