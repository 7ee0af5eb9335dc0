//! `Database` over RDS: the pre-migration snapshot of a DB instance (`DBSnapshot`) or an
//! Aurora cluster (`DBClusterSnapshot`), tagged `glidepath:release=<release>` so a resume
//! can tell its own snapshot from someone else's.

use super::errors::{classify, code};
use crate::engine::ports::{Database, PortError, PortResult, SnapshotInfo, SnapshotStatus};
use crate::plan::DatabaseKind;
use async_trait::async_trait;
use aws_sdk_rds as rds;
use aws_sdk_rds::types::Tag;

/// The tag that marks a snapshot as taken by a glidepath release.
pub const RELEASE_TAG: &str = "glidepath:release";

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
