//! Restore and snapshot retention on the stage through the real aws-sdk clients: a
//! release's snapshot restored to a new database (instance and Aurora cluster) while the
//! live one stays exactly as it was, and `database.keep_snapshots` deleting only what it
//! may after several releases.

use crate::common;

use glidepath::commands::release::ports_for;
use glidepath::engine::event::Outcome;
use glidepath::engine::ledger;
use glidepath::engine::oplog::{self, OpKind};
use glidepath::engine::ports::Ports;
use glidepath::engine::restore::{self, RestoreRequest};
use glidepath::engine::run::{self, Finished, ReleaseRequest};
use glidepath::exit;
use glidepath::plan::{DatabaseKind, Plan};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

/// The rehearsal plan with quick bakes, no assets, no live watch.
fn plan() -> Plan {
    let mut p = common::rehearsal_plan();
    for s in &mut p.steps {
        s.bake = Duration::from_secs(1);
    }
    p.assets = None;
    if let Some(m) = p.migration.as_mut() {
        m.watch = Duration::ZERO;
    }
    p
}

async fn release(plan: &Plan, ports: &Ports, version: &str) -> Finished {
    let (tx, _rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let req = ReleaseRequest {
        version: version.into(),
        auto_approve: true,
        holder: "alice@ops-1".into(),
        endpoint: None,
    };
    let f = run::release(plan, ports, req, tx, crx).await;
    assert_eq!(f.outcome, Outcome::Finalized, "{version}: {}", f.message);
    f
}

fn request(release: &str, name: Option<&str>) -> RestoreRequest {
    RestoreRequest {
        release: release.into(),
        name: name.map(str::to_string),
        holder: "bob@ops-2".into(),
        timeout: Duration::from_secs(60),
        poll: Duration::from_millis(200),
    }
}

async fn snapshot_of(ports: &Ports, release: &str) -> String {
    ledger::load_record(ports.state.as_ref(), release)
        .await
        .unwrap()
        .expect("record")
        .value
        .snapshot_id
        .expect("snapshot id")
}

/// (status, endpoint, identifier) of a DB instance, or of a cluster.
async fn describe(
    rds: &aws_sdk_rds::Client,
    kind: DatabaseKind,
    id: &str,
) -> (String, String, String) {
    match kind {
        DatabaseKind::Instance => {
            let out = rds
                .describe_db_instances()
                .db_instance_identifier(id)
                .send()
                .await
                .unwrap_or_else(|e| panic!("describe {id}: {e:?}"));
            let db = &out.db_instances()[0];
            (
                db.db_instance_status().unwrap().to_string(),
                format!(
                    "{}:{}",
                    db.endpoint().and_then(|e| e.address()).unwrap(),
                    db.endpoint().and_then(|e| e.port()).unwrap()
                ),
                db.db_instance_identifier().unwrap().to_string(),
            )
        }
        DatabaseKind::Cluster => {
            let out = rds
                .describe_db_clusters()
                .db_cluster_identifier(id)
                .send()
                .await
                .unwrap_or_else(|e| panic!("describe {id}: {e:?}"));
            let c = &out.db_clusters()[0];
            (
                c.status().unwrap().to_string(),
                format!("{}:{}", c.endpoint().unwrap(), c.port().unwrap_or_default()),
                c.db_cluster_identifier().unwrap().to_string(),
            )
        }
    }
}

async fn restore_leaves_the_live_database_alone(plan: Plan) {
    let kind = plan.database.kind;
    let seeded = common::seeded_stage("happy", plan).await;
    let rds = aws_sdk_rds::Client::new(&seeded.config);
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let first = release(&plan, &ports, "1.4.0").await;
    let second = release(&plan, &ports, "1.5.0").await;
    let live_before = describe(&rds, kind, &plan.database.id).await;

    // The first release's restore point, not the latest one's.
    let lines = Mutex::new(vec![]);
    let progress = |l: String| lines.lock().unwrap().push(l);
    let r = restore::restore(&plan, &ports, &request(&first.release_id, None), &progress)
        .await
        .unwrap_or_else(|e| panic!("restore: {e:?}\n{:?}", lines.lock().unwrap()));
    let lines = lines.into_inner().unwrap();
    let snap = snapshot_of(&ports, &first.release_id).await;
    assert_ne!(snap, snapshot_of(&ports, &second.release_id).await);
    assert_eq!(r.snapshot, snap);
    assert_eq!(
        r.name,
        restore::default_name(&plan.database.id, &first.release_id)
    );
    assert!(
        r.name
            .starts_with(&format!("{}-restore-", plan.database.id)),
        "{}",
        r.name
    );
    assert_eq!(r.status, "available");
    // It waited: the stage keeps a restored database "creating" for a while.
    assert!(
        lines.iter().any(|l| l.contains(": creating after")),
        "{lines:?}"
    );
    let (status, endpoint, id) = describe(&rds, kind, &r.name).await;
    assert_eq!(
        (status.as_str(), id.as_str()),
        ("available", r.name.as_str())
    );
    assert_eq!(
        Some(endpoint.split(':').next().unwrap()),
        r.endpoint.as_deref()
    );
    assert_ne!(
        endpoint, live_before.1,
        "the new database has its own endpoint"
    );
    // Made from the right snapshot: its tag says so.
    let arn = match kind {
        DatabaseKind::Instance => rds
            .describe_db_instances()
            .db_instance_identifier(&r.name)
            .send()
            .await
            .unwrap()
            .db_instances()[0]
            .db_instance_arn()
            .unwrap()
            .to_string(),
        DatabaseKind::Cluster => rds
            .describe_db_clusters()
            .db_cluster_identifier(&r.name)
            .send()
            .await
            .unwrap()
            .db_clusters()[0]
            .db_cluster_arn()
            .unwrap()
            .to_string(),
    };
    let tags = rds
        .list_tags_for_resource()
        .resource_name(&arn)
        .send()
        .await
        .unwrap();
    assert!(
        tags.tag_list().iter().any(|t| t.key() == Some("glidepath:restored-from")
            && t.value() == Some(snap.as_str())),
        "{tags:?}"
    );
    // The live database is exactly as it was.
    assert_eq!(describe(&rds, kind, &plan.database.id).await, live_before);

    // The same name again is refused; so is the live database's own name.
    let again = restore::restore(&plan, &ports, &request(&first.release_id, None), &|_| {})
        .await
        .unwrap_err();
    assert_eq!(again.code, exit::USAGE, "{}", again.message);
    assert!(
        again.message.contains("already exists"),
        "{}",
        again.message
    );
    let own = restore::restore(
        &plan,
        &ports,
        &request(&first.release_id, Some(&plan.database.id)),
        &|_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(own.code, exit::USAGE, "{}", own.message);
    // An unknown release names the recent ones.
    let unknown = restore::restore(&plan, &ports, &request("1.0.0-nope", None), &|_| {})
        .await
        .unwrap_err();
    assert_eq!(unknown.code, exit::USAGE);
    assert!(
        unknown.message.contains(&second.release_id) && unknown.message.contains(&first.release_id),
        "{}",
        unknown.message
    );
    // Every run is in the operations log; the release's outcome is untouched.
    let ops = oplog::list(ports.state.as_ref()).await.unwrap();
    let restores: Vec<_> = ops.iter().filter(|o| o.kind == OpKind::Restore).collect();
    assert_eq!(
        restores.iter().map(|o| o.exit_code).collect::<Vec<_>>(),
        [0, 2, 2, 2],
        "{restores:?}"
    );
    assert_eq!(restores[0].by, "bob@ops-2");
    assert_eq!(
        restores[0].release.as_deref(),
        Some(first.release_id.as_str())
    );
    let index = ledger::load_index(ports.state.as_ref()).await.unwrap();
    assert_eq!(
        index.live.and_then(|s| s.release).as_deref(),
        Some(second.release_id.as_str())
    );
    assert!(index.current.is_none());
}

#[tokio::test]
async fn restore_makes_a_new_instance_from_the_release_snapshot_and_the_live_one_is_unchanged() {
    restore_leaves_the_live_database_alone(plan()).await;
}

#[tokio::test]
async fn restore_makes_a_new_aurora_cluster_and_the_live_cluster_is_unchanged() {
    let mut p = plan();
    p.database.kind = DatabaseKind::Cluster;
    p.database.id = "shop-aurora".into();
    restore_leaves_the_live_database_alone(p).await;
}

#[tokio::test]
async fn restore_through_the_binary_prints_the_endpoint_as_json_and_refuses_a_deleted_snapshot() {
    let seeded = common::seeded_stage("happy", plan()).await;
    let rds = aws_sdk_rds::Client::new(&seeded.config);
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let first = release(&plan, &ports, "1.4.0").await;
    let endpoint = seeded.stage.endpoint();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_glidepath"))
            .arg("--endpoint-url")
            .arg(&endpoint)
            .args(["restore", "examples/rehearsal.toml"])
            .args(args)
            .current_dir(common::repo_root())
            .stdin(Stdio::null())
            .output()
            .expect("run glidepath")
    };
    let out = run(&[
        "--release",
        &first.release_id,
        "--name",
        "shop-db-copy",
        "--output",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(json["name"], "shop-db-copy");
    assert_eq!(json["status"], "available");
    assert_eq!(json["source"], "shop-db");
    assert!(
        json["endpoint"].as_str().is_some_and(|e| !e.is_empty()),
        "{json}"
    );
    assert!(stderr.contains("restore: restoring snapshot"), "{stderr}");

    // The snapshot deleted by hand: a clear refusal, exit 2, nothing made.
    let snap = snapshot_of(&ports, &first.release_id).await;
    rds.delete_db_snapshot()
        .db_snapshot_identifier(&snap)
        .send()
        .await
        .unwrap();
    let out = run(&["--release", &first.release_id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("snapshot {snap} of release"))
            && stderr.contains("no longer exists"),
        "{stderr}"
    );
    let listed = rds.describe_db_instances().send().await.unwrap();
    let mut names: Vec<_> = listed
        .db_instances()
        .iter()
        .filter_map(|d| d.db_instance_identifier())
        .collect();
    names.sort();
    assert_eq!(names, ["shop-db", "shop-db-copy"]);
}

async fn snapshot_ids(rds: &aws_sdk_rds::Client) -> Vec<String> {
    let out = rds.describe_db_snapshots().send().await.unwrap();
    let mut ids: Vec<String> = out
        .db_snapshots()
        .iter()
        .filter_map(|s| s.db_snapshot_identifier().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

async fn tagged_snapshot(rds: &aws_sdk_rds::Client, db: &str, id: &str, release: Option<&str>) {
    let mut req = rds
        .create_db_snapshot()
        .db_instance_identifier(db)
        .db_snapshot_identifier(id);
    if let Some(r) = release {
        req = req.tags(
            aws_sdk_rds::types::Tag::builder()
                .key("glidepath:release")
                .value(r)
                .build(),
        );
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("snapshot {id}: {e:?}"));
}

#[tokio::test]
async fn retention_deletes_only_old_tagged_snapshots_never_the_live_or_standby_restore_point() {
    let mut p = plan();
    p.database.keep_snapshots = Some(2);
    let seeded = common::seeded_stage("happy", p).await;
    let rds = aws_sdk_rds::Client::new(&seeded.config);
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let a = release(&plan, &ports, "1.4.0").await;
    let b = release(&plan, &ports, "1.5.0").await;
    let (snap_a, snap_b) = (
        snapshot_of(&ports, &a.release_id).await,
        snapshot_of(&ports, &b.release_id).await,
    );
    // Two releases, keep 2: nothing went yet.
    assert!(snapshot_ids(&rds).await.contains(&snap_a));

    // Newer glidepath snapshots of releases that are neither live nor standby (as failed
    // releases leave), one nobody tagged, and a tagged one of another database.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    tagged_snapshot(&rds, "shop-db", "shop-db-failed-x1", Some("x1")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    tagged_snapshot(&rds, "shop-db", "shop-db-failed-x2", Some("x2")).await;
    tagged_snapshot(&rds, "shop-db", "shop-db-by-hand", None).await;
    rds.create_db_instance()
        .db_instance_identifier("other-db")
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .master_username("other")
        .master_user_password("password123")
        .allocated_storage(20)
        .send()
        .await
        .unwrap();
    tagged_snapshot(&rds, "other-db", "other-db-old", Some("x0")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // C finalizes: live C, standby B. Newest two: C, x2. B is older than x1 but is the
    // standby's restore point; A and x1 go.
    let c = release(&plan, &ports, "1.6.0").await;
    let snap_c = snapshot_of(&ports, &c.release_id).await;
    let all = snapshot_ids(&rds).await;
    // The stage's automated backups (`rds:<db>-<date>`) are never glidepath's to delete.
    assert!(all.iter().any(|s| s.starts_with("rds:shop-db-")), "{all:?}");
    let left: Vec<String> = all.into_iter().filter(|s| !s.starts_with("rds:")).collect();
    let mut want = vec![
        snap_b.clone(),
        snap_c.clone(),
        "shop-db-failed-x2".to_string(),
        "shop-db-by-hand".to_string(),
        "other-db-old".to_string(),
    ];
    want.sort();
    assert_eq!(
        left, want,
        "A ({snap_a}) and x1 should be the only ones gone"
    );
    let record = ledger::load_record(ports.state.as_ref(), &c.release_id)
        .await
        .unwrap()
        .unwrap()
        .value;
    let detail = record.phases.finalize.detail.unwrap_or_default();
    assert!(
        detail.contains("deleted 2 old snapshot(s) of shop-db") && detail.contains(&snap_a),
        "{detail}"
    );
}
