//! Snapshot retention (`database.keep_snapshots`): which of the snapshots glidepath took of
//! the plan's database may go. Only snapshots tagged `glidepath:release` are ever listed
//! (the port does not return others), the newest N are kept, and so is every restore point
//! of the live and the standby release, however old: those are the snapshots `glidepath
//! restore` needs to get back to before either of them migrated.

use super::ids;
use super::ledger::Index;
use super::ports::{Database, TaggedSnapshot};

/// The releases whose restore points must stay: the index's live and standby ones.
pub fn protected_releases(index: &Index) -> Vec<String> {
    [&index.live, &index.standby]
        .into_iter()
        .flatten()
        .filter_map(|s| s.release.clone())
        .collect()
}

/// What to delete: all but the newest `keep` (a snapshot still being created counts as
/// the newest), never one of a `protected` release (by its tag or by the id the release
/// would have given it).
pub fn to_delete(
    mut snapshots: Vec<TaggedSnapshot>,
    keep: usize,
    db: &str,
    protected: &[String],
) -> Vec<TaggedSnapshot> {
    // Newest first; None (creating) before any time; ties by id for a stable answer.
    snapshots.sort_by(|a, b| match (a.created_at, b.created_at) {
        (None, None) => b.id.cmp(&a.id),
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => y.cmp(&x).then_with(|| b.id.cmp(&a.id)),
    });
    let kept_ids: Vec<String> = protected.iter().map(|r| ids::snapshot_id(db, r)).collect();
    snapshots
        .into_iter()
        .skip(keep)
        .filter(|s| !protected.contains(&s.release) && !kept_ids.contains(&s.id))
        .collect()
}

/// Delete what [`to_delete`] names; returns a summary, or the first error (what was
/// deleted before it stays deleted).
pub async fn prune(
    database: &dyn Database,
    keep: usize,
    db: &str,
    protected: &[String],
) -> Result<String, String> {
    let listed = database
        .tagged_snapshots()
        .await
        .map_err(|e| e.to_string())?;
    let total = listed.len();
    let gone = to_delete(listed, keep, db, protected);
    if gone.is_empty() {
        return Ok(format!(
            "{total} snapshot(s) of {db} kept (keep_snapshots = {keep})"
        ));
    }
    let mut deleted = vec![];
    for s in &gone {
        database
            .delete_snapshot(&s.id)
            .await
            .map_err(|e| match deleted.is_empty() {
                true => e.to_string(),
                false => format!("{e} (after deleting {})", deleted.join(", ")),
            })?;
        deleted.push(s.id.clone());
    }
    Ok(format!(
        "deleted {} old snapshot(s) of {db} ({}), kept {}",
        deleted.len(),
        deleted.join(", "),
        total - deleted.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn snap(release: &str, minute: Option<u32>) -> TaggedSnapshot {
        TaggedSnapshot {
            id: ids::snapshot_id("shop-db", release),
            release: release.into(),
            created_at: minute.map(|m| Utc.with_ymd_and_hms(2026, 11, 3, 2, m, 0).unwrap()),
        }
    }

    fn ids_of(v: &[TaggedSnapshot]) -> Vec<&str> {
        v.iter().map(|s| s.release.as_str()).collect()
    }

    #[test]
    fn the_newest_are_kept_and_the_rest_go() {
        let all = vec![
            snap("r1", Some(1)),
            snap("r3", Some(3)),
            snap("r2", Some(2)),
            snap("r4", None),
        ];
        assert_eq!(ids_of(&to_delete(all, 2, "shop-db", &[])), ["r2", "r1"]);
    }

    #[test]
    fn restore_points_of_live_and_standby_are_never_deleted() {
        let all = vec![
            snap("r1", Some(1)),
            snap("r2", Some(2)),
            snap("r3", Some(3)),
            snap("r4", Some(4)),
        ];
        // r1 is on standby (a rollback target), r4 live: only r2 goes besides what is kept.
        let gone = to_delete(all, 2, "shop-db", &["r4".into(), "r1".into()]);
        assert_eq!(ids_of(&gone), ["r2"]);
    }

    #[test]
    fn a_protected_id_is_kept_even_if_its_tag_names_another_release() {
        let mut odd = snap("r1", Some(1));
        odd.release = "someone-else".into();
        let gone = to_delete(vec![odd, snap("r5", Some(5))], 1, "shop-db", &["r1".into()]);
        assert!(gone.is_empty(), "{gone:?}");
    }
}
