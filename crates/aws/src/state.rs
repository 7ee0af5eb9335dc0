//! `StateStore` over S3: the lock, the ledger and the index as small objects with
//! compare-and-swap through conditional writes (`If-None-Match: *`, `If-Match: <etag>`).
//!
//! Keys given to the port are relative to the plan's state prefix; this adapter adds the
//! prefix on the way in and strips it from `list` results on the way out.

use super::errors::{classify, code, status};
use crate::engine::ports::{Conditional, ETag, PortError, PortResult, StateStore};
use async_trait::async_trait;
use aws_sdk_s3 as s3;
use aws_sdk_s3::primitives::ByteStream;

pub struct S3State {
    client: s3::Client,
    bucket: String,
    /// Empty, or ends with `/`.
    prefix: String,
}

impl S3State {
    pub fn new(client: s3::Client, bucket: &str, prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        S3State {
            client,
            bucket: bucket.to_string(),
            prefix,
        }
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key.trim_start_matches('/'))
    }

    fn what(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.full_key(key))
    }

    /// A missing bucket is a plan/configuration problem, not a missing key.
    fn no_bucket(&self, operation: &str) -> PortError {
        PortError::Fatal {
            operation: operation.to_string(),
            message: format!(
                "state bucket {:?} does not exist; create it or fix [state].bucket in the plan",
                self.bucket
            ),
        }
    }

    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        condition: Condition<'_>,
    ) -> PortResult<Conditional> {
        const OP: &str = "s3:PutObject";
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .content_type("application/json")
            .body(ByteStream::from(body));
        let req = match condition {
            Condition::Absent => req.if_none_match("*"),
            Condition::Matches(etag) => req.if_match(&etag.0),
        };
        match req.send().await {
            Ok(out) => match out.e_tag() {
                Some(tag) => Ok(Conditional::Written(ETag(tag.to_string()))),
                None => Err(PortError::Fatal {
                    operation: OP.into(),
                    message: format!("{}: S3 returned no ETag", self.what(key)),
                }),
            },
            Err(e) => {
                let c = code(&e);
                if status(&e) == Some(412) || c == Some("PreconditionFailed") {
                    return Ok(Conditional::Conflict);
                }
                if c == Some("NoSuchBucket") {
                    return Err(self.no_bucket(OP));
                }
                // If-Match on a key someone deleted: the version we read is gone, so the
                // swap lost just as with a changed ETag.
                if matches!(condition, Condition::Matches(_)) && c == Some("NoSuchKey") {
                    return Ok(Conditional::Conflict);
                }
                Err(classify(OP, &self.what(key), e))
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Condition<'a> {
    Absent,
    Matches(&'a ETag),
}

#[async_trait]
impl StateStore for S3State {
    async fn get(&self, key: &str) -> PortResult<Option<(Vec<u8>, ETag)>> {
        const OP: &str = "s3:GetObject";
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                return match code(&e) {
                    Some("NoSuchBucket") => Err(self.no_bucket(OP)),
                    _ => match classify(OP, &self.what(key), e) {
                        PortError::NotFound { .. } => Ok(None),
                        other => Err(other),
                    },
                }
            }
        };
        let etag = out.e_tag().map(str::to_string);
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| PortError::Transient {
                operation: OP.into(),
                message: format!("{}: reading the body failed: {e}", self.what(key)),
            })?
            .into_bytes()
            .to_vec();
        match etag {
            Some(tag) => Ok(Some((body, ETag(tag)))),
            None => Err(PortError::Fatal {
                operation: OP.into(),
                message: format!("{}: S3 returned no ETag", self.what(key)),
            }),
        }
    }

    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> PortResult<Conditional> {
        self.put(key, body, Condition::Absent).await
    }

    async fn put_if_match(&self, key: &str, body: Vec<u8>, etag: &ETag) -> PortResult<Conditional> {
        self.put(key, body, Condition::Matches(etag)).await
    }

    async fn delete(&self, key: &str) -> PortResult<()> {
        const OP: &str = "s3:DeleteObject";
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("NoSuchBucket") => Err(self.no_bucket(OP)),
            Err(e) => match classify(OP, &self.what(key), e) {
                // Already gone is what we wanted.
                PortError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list(&self, prefix: &str) -> PortResult<Vec<String>> {
        const OP: &str = "s3:ListObjectsV2";
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = match self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.full_key(prefix))
                .set_continuation_token(token)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if code(&e) == Some("NoSuchBucket") => return Err(self.no_bucket(OP)),
                Err(e) => return Err(classify(OP, &self.what(prefix), e)),
            };
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .filter_map(|k| k.strip_prefix(&self.prefix))
                    .map(str::to_string),
            );
            token = out.next_continuation_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(prefix: &str) -> S3State {
        let conf = s3::Config::builder()
            .behavior_version(s3::config::BehaviorVersion::latest())
            .build();
        S3State::new(s3::Client::from_conf(conf), "b", prefix)
    }

    #[test]
    fn keys_join_the_prefix_with_one_slash() {
        assert_eq!(
            store("glidepath/shop/").full_key("lock.json"),
            "glidepath/shop/lock.json"
        );
        assert_eq!(
            store("/glidepath/shop").full_key("/lock.json"),
            "glidepath/shop/lock.json"
        );
        assert_eq!(store("").full_key("lock.json"), "lock.json");
    }
}
