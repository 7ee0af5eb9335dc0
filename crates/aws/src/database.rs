//! `Database` over RDS: the pre-migration snapshot of a DB instance (`DBSnapshot`) or an
//! Aurora cluster (`DBClusterSnapshot`), tagged `glidepath:release=<release>` so a resume
//! can tell its own snapshot from someone else's.

use super::errors::{classify, code};
use crate::engine::ports::{
    Database, DbState, PortError, PortResult, SnapshotInfo, SnapshotStatus, TaggedSnapshot,
};
use crate::plan::DatabaseKind;
use async_trait::async_trait;
use aws_sdk_rds as rds;
use aws_sdk_rds::types::Tag;

/// The tag that marks a snapshot as taken by a glidepath release.
pub const RELEASE_TAG: &str = "glidepath:release";
/// The tag on a database `glidepath restore` made: the snapshot it came from.
pub const RESTORED_FROM_TAG: &str = "glidepath:restored-from";

pub struct RdsDatabase {
    client: rds::Client,
    kind: DatabaseKind,
    /// DB instance identifier, or DB cluster identifier for Aurora.
    db: String,
}

impl RdsDatabase {
    pub fn new(client: rds::Client, kind: DatabaseKind, db: &str) -> Self {
        RdsDatabase {
            client,
            kind,
            db: db.to_string(),
        }
    }

    /// The release tag from the describe output, else from ListTagsForResource (some
    /// endpoints leave TagList out of Describe*).
    async fn release_tag(&self, listed: &[Tag], arn: Option<&str>) -> PortResult<Option<String>> {
        if let Some(v) = find_tag(listed) {
            return Ok(Some(v));
        }
        let Some(arn) = arn else { return Ok(None) };
        let out = self
            .client
            .list_tags_for_resource()
            .resource_name(arn)
            .send()
            .await
            .map_err(|e| classify("rds:ListTagsForResource", arn, e))?;
        Ok(find_tag(out.tag_list()))
    }
}

/// Where the plan's database lives (subnet group, security groups) and, for a cluster,
/// its engine: a restored copy is placed the same way so the app's network can reach it.
#[derive(Default)]
struct Placement {
    subnet_group: Option<String>,
    security_groups: Vec<String>,
    instance_class: Option<String>,
    engine: Option<String>,
}

fn when(t: Option<&aws_smithy_types::DateTime>) -> Option<chrono::DateTime<chrono::Utc>> {
    t.and_then(|t| chrono::DateTime::from_timestamp_millis(t.to_millis().ok()?))
}

fn not_found_is_none<T>(r: PortResult<T>) -> PortResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(PortError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl RdsDatabase {
    async fn placement(&self) -> PortResult<Placement> {
        let what = format!("{} {}", self.kind_word(), self.db);
        match self.kind {
            DatabaseKind::Instance => {
                let out = self
                    .client
                    .describe_db_instances()
                    .db_instance_identifier(&self.db)
                    .send()
                    .await
                    .map_err(|e| classify("rds:DescribeDBInstances", &what, e))?;
                let Some(db) = out.db_instances().first() else {
                    return Ok(Placement::default());
                };
                Ok(Placement {
                    subnet_group: db
                        .db_subnet_group()
                        .and_then(|g| g.db_subnet_group_name())
                        .map(str::to_string),
                    security_groups: db
                        .vpc_security_groups()
                        .iter()
                        .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
                        .collect(),
                    instance_class: db.db_instance_class().map(str::to_string),
                    engine: db.engine().map(str::to_string),
                })
            }
            DatabaseKind::Cluster => {
                let out = self
                    .client
                    .describe_db_clusters()
                    .db_cluster_identifier(&self.db)
                    .send()
                    .await
                    .map_err(|e| classify("rds:DescribeDBClusters", &what, e))?;
                let Some(c) = out.db_clusters().first() else {
                    return Ok(Placement::default());
                };
                Ok(Placement {
                    subnet_group: c.db_subnet_group().map(str::to_string),
                    security_groups: c
                        .vpc_security_groups()
                        .iter()
                        .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
                        .collect(),
                    instance_class: None,
                    engine: c.engine().map(str::to_string),
                })
            }
        }
    }

    fn kind_word(&self) -> &'static str {
        match self.kind {
            DatabaseKind::Instance => "DB instance",
            DatabaseKind::Cluster => "DB cluster",
        }
    }
}

fn find_tag(tags: &[Tag]) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some(RELEASE_TAG))
        .and_then(|t| t.value())
        .map(str::to_string)
}

/// RDS status words → what the engine waits on.
fn snapshot_status(status: Option<&str>, percent: Option<i32>) -> SnapshotStatus {
    match status.unwrap_or("") {
        "available" => SnapshotStatus::Available,
        // Still on its way to available.
        "creating" | "pending" | "copying" | "modifying" | "upgrading" | "backing-up" => {
            SnapshotStatus::Creating {
                percent: percent.unwrap_or(0).clamp(0, 100) as u8,
            }
        }
        other => SnapshotStatus::Failed {
            status: if other.is_empty() {
                "unknown".to_string()
            } else {
                other.to_string()
            },
        },
    }
}

#[async_trait]
impl Database for RdsDatabase {
    async fn describe_snapshot(&self, snapshot_id: &str) -> PortResult<Option<SnapshotInfo>> {
        let what = format!("snapshot {snapshot_id}");
        let (status, percent, tags, arn) = match self.kind {
            DatabaseKind::Instance => {
                let out = match self
                    .client
                    .describe_db_snapshots()
                    .db_snapshot_identifier(snapshot_id)
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(e) => {
                        return match classify("rds:DescribeDBSnapshots", &what, e) {
                            PortError::NotFound { .. } => Ok(None),
                            other => Err(other),
                        }
                    }
                };
                let Some(s) = out.db_snapshots().first() else {
                    return Ok(None);
                };
                (
                    s.status().map(str::to_string),
                    s.percent_progress(),
                    s.tag_list().to_vec(),
                    s.db_snapshot_arn().map(str::to_string),
                )
            }
            DatabaseKind::Cluster => {
                let out = match self
                    .client
                    .describe_db_cluster_snapshots()
                    .db_cluster_snapshot_identifier(snapshot_id)
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(e) => {
                        return match classify("rds:DescribeDBClusterSnapshots", &what, e) {
                            PortError::NotFound { .. } => Ok(None),
                            other => Err(other),
                        }
                    }
                };
                let Some(s) = out.db_cluster_snapshots().first() else {
                    return Ok(None);
                };
                (
                    s.status().map(str::to_string),
                    s.percent_progress(),
                    s.tag_list().to_vec(),
                    s.db_cluster_snapshot_arn().map(str::to_string),
                )
            }
        };
        Ok(Some(SnapshotInfo {
            id: snapshot_id.to_string(),
            status: snapshot_status(status.as_deref(), percent),
            release_tag: self.release_tag(&tags, arn.as_deref()).await?,
        }))
    }

    /// Starts the snapshot. If one with this id already exists this returns Ok: the
    /// engine describes it and adopts it only when its release tag is ours.
    async fn create_snapshot(&self, snapshot_id: &str, release: &str) -> PortResult<()> {
        let tag = Tag::builder().key(RELEASE_TAG).value(release).build();
        let result = match self.kind {
            DatabaseKind::Instance => self
                .client
                .create_db_snapshot()
                .db_instance_identifier(&self.db)
                .db_snapshot_identifier(snapshot_id)
                .tags(tag)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| match code(&e) {
                    Some("DBSnapshotAlreadyExists") => None,
                    _ => Some(classify(
                        "rds:CreateDBSnapshot",
                        &format!("DB instance {}", self.db),
                        e,
                    )),
                }),
            DatabaseKind::Cluster => self
                .client
                .create_db_cluster_snapshot()
                .db_cluster_identifier(&self.db)
                .db_cluster_snapshot_identifier(snapshot_id)
                .tags(tag)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| match code(&e) {
                    Some("DBClusterSnapshotAlreadyExistsFault") => None,
                    _ => Some(classify(
                        "rds:CreateDBClusterSnapshot",
                        &format!("DB cluster {}", self.db),
                        e,
                    )),
                }),
        };
        match result {
            Ok(()) | Err(None) => Ok(()),
            Err(Some(e)) => Err(e),
        }
    }

    async fn tagged_snapshots(&self) -> PortResult<Vec<TaggedSnapshot>> {
        let what = format!("snapshots of {} {}", self.kind_word(), self.db);
        // (id, created, listed tags, arn) of every manual snapshot of this database.
        let mut found = vec![];
        let mut marker: Option<String> = None;
        loop {
            let page_marker = marker.clone();
            let next = match self.kind {
                DatabaseKind::Instance => {
                    let out = self
                        .client
                        .describe_db_snapshots()
                        .db_instance_identifier(&self.db)
                        .snapshot_type("manual")
                        .set_marker(page_marker)
                        .send()
                        .await
                        .map_err(|e| classify("rds:DescribeDBSnapshots", &what, e))?;
                    for s in out.db_snapshots() {
                        found.push((
                            s.db_snapshot_identifier().unwrap_or_default().to_string(),
                            when(s.snapshot_create_time()),
                            s.tag_list().to_vec(),
                            s.db_snapshot_arn().map(str::to_string),
                        ));
                    }
                    out.marker().map(str::to_string)
                }
                DatabaseKind::Cluster => {
                    let out = self
                        .client
                        .describe_db_cluster_snapshots()
                        .db_cluster_identifier(&self.db)
                        .snapshot_type("manual")
                        .set_marker(page_marker)
                        .send()
                        .await
                        .map_err(|e| classify("rds:DescribeDBClusterSnapshots", &what, e))?;
                    for s in out.db_cluster_snapshots() {
                        found.push((
                            s.db_cluster_snapshot_identifier()
                                .unwrap_or_default()
                                .to_string(),
                            when(s.snapshot_create_time()),
                            s.tag_list().to_vec(),
                            s.db_cluster_snapshot_arn().map(str::to_string),
                        ));
                    }
                    out.marker().map(str::to_string)
                }
            };
            match next {
                Some(m) if !m.is_empty() => marker = Some(m),
                _ => break,
            }
        }
        let mut out = vec![];
        for (id, created_at, tags, arn) in found {
            if id.is_empty() {
                continue;
            }
            if let Some(release) = self.release_tag(&tags, arn.as_deref()).await? {
                out.push(TaggedSnapshot {
                    id,
                    release,
                    created_at,
                });
            }
        }
        Ok(out)
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> PortResult<()> {
        let what = format!("snapshot {snapshot_id}");
        let result = match self.kind {
            DatabaseKind::Instance => self
                .client
                .delete_db_snapshot()
                .db_snapshot_identifier(snapshot_id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("rds:DeleteDBSnapshot", &what, e)),
            DatabaseKind::Cluster => self
                .client
                .delete_db_cluster_snapshot()
                .db_cluster_snapshot_identifier(snapshot_id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("rds:DeleteDBClusterSnapshot", &what, e)),
        };
        not_found_is_none(result).map(|_| ())
    }

    async fn restore_snapshot(
        &self,
        snapshot_id: &str,
        name: &str,
        release: &str,
    ) -> PortResult<()> {
        let place = self.placement().await?;
        let tags = [
            Tag::builder()
                .key(RESTORED_FROM_TAG)
                .value(snapshot_id)
                .build(),
            Tag::builder()
                .key("glidepath:restored-release")
                .value(release)
                .build(),
        ];
        let what = format!("{} {name} from snapshot {snapshot_id}", self.kind_word());
        match self.kind {
            DatabaseKind::Instance => {
                let mut req = self
                    .client
                    .restore_db_instance_from_db_snapshot()
                    .db_instance_identifier(name)
                    .db_snapshot_identifier(snapshot_id)
                    .set_db_instance_class(place.instance_class)
                    .set_db_subnet_group_name(place.subnet_group)
                    .set_tags(Some(tags.to_vec()));
                if !place.security_groups.is_empty() {
                    req = req.set_vpc_security_group_ids(Some(place.security_groups));
                }
                req.send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify("rds:RestoreDBInstanceFromDBSnapshot", &what, e))
            }
            DatabaseKind::Cluster => {
                let mut req = self
                    .client
                    .restore_db_cluster_from_snapshot()
                    .db_cluster_identifier(name)
                    .snapshot_identifier(snapshot_id)
                    // Required by RDS; the engine of the cluster the snapshot is of.
                    .set_engine(place.engine)
                    .set_db_subnet_group_name(place.subnet_group)
                    .set_tags(Some(tags.to_vec()));
                if !place.security_groups.is_empty() {
                    req = req.set_vpc_security_group_ids(Some(place.security_groups));
                }
                req.send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify("rds:RestoreDBClusterFromSnapshot", &what, e))
            }
        }
    }

    async fn describe_db(&self, name: &str) -> PortResult<Option<DbState>> {
        let what = format!("{} {name}", self.kind_word());
        match self.kind {
            DatabaseKind::Instance => {
                let out = self
                    .client
                    .describe_db_instances()
                    .db_instance_identifier(name)
                    .send()
                    .await
                    .map_err(|e| classify("rds:DescribeDBInstances", &what, e));
                let Some(out) = not_found_is_none(out)? else {
                    return Ok(None);
                };
                Ok(out.db_instances().first().map(|db| DbState {
                    name: name.to_string(),
                    status: db.db_instance_status().unwrap_or("unknown").to_string(),
                    endpoint: db.endpoint().and_then(|e| e.address()).map(str::to_string),
                    port: db.endpoint().and_then(|e| e.port()),
                }))
            }
            DatabaseKind::Cluster => {
                let out = self
                    .client
                    .describe_db_clusters()
                    .db_cluster_identifier(name)
                    .send()
                    .await
                    .map_err(|e| classify("rds:DescribeDBClusters", &what, e));
                let Some(out) = not_found_is_none(out)? else {
                    return Ok(None);
                };
                Ok(out.db_clusters().first().map(|c| DbState {
                    name: name.to_string(),
                    status: c.status().unwrap_or("unknown").to_string(),
                    endpoint: c.endpoint().map(str::to_string),
                    port: c.port(),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_what_the_engine_waits_on() {
        assert_eq!(
            snapshot_status(Some("creating"), Some(40)),
            SnapshotStatus::Creating { percent: 40 }
        );
        assert_eq!(
            snapshot_status(Some("creating"), None),
            SnapshotStatus::Creating { percent: 0 }
        );
        assert_eq!(
            snapshot_status(Some("available"), Some(100)),
            SnapshotStatus::Available
        );
        assert_eq!(
            snapshot_status(Some("failed"), None),
            SnapshotStatus::Failed {
                status: "failed".into()
            }
        );
        assert_eq!(
            snapshot_status(Some("creating"), Some(250)),
            SnapshotStatus::Creating { percent: 100 }
        );
    }

    #[test]
    fn release_tag_is_found_among_others() {
        let tags = [
            Tag::builder().key("team").value("shop").build(),
            Tag::builder().key(RELEASE_TAG).value("r7").build(),
        ];
        assert_eq!(find_tag(&tags).as_deref(), Some("r7"));
        assert_eq!(find_tag(&tags[..1]), None);
    }
}
