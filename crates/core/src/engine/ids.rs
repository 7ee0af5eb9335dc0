//! Deterministic names derived from the release id, so a resumed release finds what an
//! earlier run created instead of creating it again.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// `<version>-<UTC yyyymmddThhmmssZ>`, e.g. `1.4.0-20261103T021500Z`.
pub fn release_id(version: &str, at: DateTime<Utc>) -> String {
    format!("{version}-{}", at.format("%Y%m%dT%H%M%SZ"))
}

/// RDS snapshot identifier `<db>-<release>`: letters, digits and hyphens only, starting
/// with a letter, no double hyphen, no trailing hyphen, at most 255 characters.
pub fn snapshot_id(db: &str, release: &str) -> String {
    let raw = format!("{db}-{release}");
    let mut out = String::with_capacity(raw.len() + 5);
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert_str(0, "gp-");
    }
    out.truncate(255);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

fn digest_hex(what: &str, release: &str) -> String {
    let mut h = Sha256::new();
    h.update(what.as_bytes());
    h.update([0]);
    h.update(release.as_bytes());
    hex::encode(h.finalize())
}

/// The `startedBy` prefix every migration task of one app and environment shares:
/// `glidepath-` + 8 hex digits of (app, environment) + `-`.
pub fn started_by_prefix(app: &str, environment: &str) -> String {
    let scope = format!("{app}\u{0}{environment}");
    format!(
        "glidepath-{}-",
        &digest_hex("started-by-scope", &scope)[..8]
    )
}

/// ECS `startedBy` (at most 36 characters): [`started_by_prefix`] + 16 hex digits of the
/// release, so the migration tasks of other releases of the same app and environment can
/// be found by prefix. (Releases recorded before this scheme keep the `startedBy` in their
/// record: `glidepath-` + 20 hex digits.)
pub fn started_by(app: &str, environment: &str, release: &str) -> String {
    format!(
        "{}{}",
        started_by_prefix(app, environment),
        &digest_hex("started-by", release)[..16]
    )
}

/// ECS `clientToken` (at most 64 characters) for the migration's RunTask.
pub fn client_token(release: &str) -> String {
    format!("glidepath-{}", &digest_hex("client-token", release)[..40])
}

/// One attempt at one shard of a sharded migration, as digest input (attempt 0 is the
/// first; a resume after the shard failed tries again under a new attempt).
fn shard_key(release: &str, shard: &str, attempt: u32) -> String {
    format!("{release}\u{0}{shard}\u{0}{attempt}")
}

/// `startedBy` of one shard's task: the plan's prefix (so the one-task guard sees it) and a
/// digest of release, shard and attempt, so a resume finds exactly that shard's task.
pub fn shard_started_by(
    app: &str,
    environment: &str,
    release: &str,
    shard: &str,
    attempt: u32,
) -> String {
    format!(
        "{}{}",
        started_by_prefix(app, environment),
        &digest_hex("started-by-shard", &shard_key(release, shard, attempt))[..16]
    )
}

/// `clientToken` of one shard's RunTask (see [`shard_started_by`]).
pub fn shard_client_token(release: &str, shard: &str, attempt: u32) -> String {
    format!(
        "glidepath-{}",
        &digest_hex("client-token-shard", &shard_key(release, shard, attempt))[..40]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn release_ids_carry_version_and_utc_time() {
        let at = Utc.with_ymd_and_hms(2026, 11, 3, 2, 15, 0).unwrap();
        assert_eq!(release_id("1.4.0", at), "1.4.0-20261103T021500Z");
    }

    #[test]
    fn snapshot_ids_are_valid_for_rds() {
        assert_eq!(
            snapshot_id("shop-db", "1.4.0-20261103T021500Z"),
            "shop-db-1-4-0-20261103t021500z"
        );
        assert_eq!(snapshot_id("db", "--x"), "db-x");
        assert_eq!(snapshot_id("9db", "v1"), "gp-9db-v1");
    }

    #[test]
    fn task_ids_fit_ecs_limits_and_are_stable() {
        let r = "1.4.0-20261103T021500Z";
        let sb = |app: &str, env: &str, r: &str| started_by(app, env, r);
        assert!(sb("a-rather-long-app-name", "production", r).len() <= 36);
        assert!(client_token(r).len() <= 64);
        assert_eq!(sb("shop", "prod", r), sb("shop", "prod", r));
        assert_ne!(
            sb("shop", "prod", r),
            sb("shop", "prod", "1.4.1-20261103T021500Z")
        );
        assert!(sb("shop", "prod", r).starts_with(&started_by_prefix("shop", "prod")));
        assert!(!sb("shop", "staging", r).starts_with(&started_by_prefix("shop", "prod")));
        assert!(!sb("shopx", "prod", r).starts_with(&started_by_prefix("shop", "prod")));
        assert!(sb("shop", "prod", r)
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    proptest! {
        #[test]
        fn any_input_gives_a_valid_snapshot_id(db in ".{0,40}", rel in ".{0,300}") {
            let id = snapshot_id(&db, &rel);
            prop_assert!(id.len() <= 255);
            prop_assert!(id.starts_with(|c: char| c.is_ascii_alphabetic()));
            prop_assert!(!id.contains("--"));
            prop_assert!(!id.ends_with('-'));
            prop_assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        }
    }
}
