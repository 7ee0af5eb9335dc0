//! The engine's `Assets` port over S3: the release's `assets` phase runs exactly the code
//! `glidepath assets publish` runs.

use super::publish::{PublishOptions, Publisher};
use super::Progress;
use crate::engine::ports::Assets;
use crate::plan::AssetsConfig;
use async_trait::async_trait;

pub struct S3Assets {
    publisher: Publisher,
    s3: aws_sdk_s3::Client,
    cfg: AssetsConfig,
}

impl S3Assets {
    pub fn new(s3: aws_sdk_s3::Client, cfg: AssetsConfig) -> Self {
        S3Assets {
            publisher: Publisher::new(s3.clone(), cfg.clone()),
            s3,
            cfg,
        }
    }

    pub fn with_options(mut self, opts: PublishOptions) -> Self {
        self.publisher = self.publisher.with_options(opts);
        self
    }

    /// The name the summary line uses (the plan's app).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.publisher = self.publisher.with_name(name);
        self
    }
}

#[async_trait]
impl Assets for S3Assets {
    /// Progress is in files: `(files finished, files in the tree)`; while hashing it is
    /// `(0, files)`. Returns the summary line; publishing an already complete version is
    /// a success that says so.
    async fn publish(
        &self,
        version: &str,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<String, String> {
        let report = |p: &Progress| progress(p.files_done, p.files_total);
        self.publisher
            .publish(version, &report)
            .await
            .map(|r| r.summary())
            .map_err(|e| e.to_string())
    }

    /// Exactly `glidepath assets prune`: manifests first, never a protected version.
    async fn prune(&self, keep: usize, protected: &[String]) -> Result<Option<String>, String> {
        super::prune::prune(&self.s3, &self.cfg, keep, protected, false)
            .await
            .map(|r| Some(r.summary()))
            .map_err(|e| e.to_string())
    }
}
