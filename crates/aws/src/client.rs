//! Client construction: the standard credential chain (env, profile, SSO, IMDS) plus
//! the endpoint override. Built once per command; credentials are never logged.

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_types::SdkConfig;

/// Where and as whom to call AWS.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub region: String,
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
}

/// Load the shared SDK configuration once.
pub async fn sdk_config(target: &Target) -> SdkConfig {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(target.region.clone()));
    if let Some(profile) = &target.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &target.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// Like [`sdk_config`], but an empty `target.region` leaves the region to the standard
/// chain (environment, profile), for commands that have no plan to take it from.
pub async fn sdk_config_chain_region(target: &Target) -> SdkConfig {
    if !target.region.is_empty() {
        return sdk_config(target).await;
    }
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(profile) = &target.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &target.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// S3 needs path-style addressing against an emulator (no wildcard DNS on loopback).
pub fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    let path_style = config.endpoint_url().is_some();
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// How long one AWS control-plane call may take in all, retries included.
pub const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// How long one attempt of it may take.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

/// `config` with timeouts and the standard retry mode (3 attempts) for the adapters'
/// small control-plane calls, so a hung endpoint becomes a Transient error instead of a
/// stuck release. Asset uploads keep the plain config: a large PutObject may need longer.
pub fn control_plane(config: &SdkConfig) -> SdkConfig {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    config
        .to_builder()
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(3))
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .build()
}

/// The account id the credentials belong to (STS GetCallerIdentity), for display only:
/// None when it cannot be read within a few seconds.
pub async fn account_id(config: &SdkConfig) -> Option<String> {
    let sts = aws_sdk_sts::Client::new(&control_plane(config));
    let call = sts.get_caller_identity().send();
    match tokio::time::timeout(std::time::Duration::from_secs(5), call).await {
        Ok(Ok(out)) => out.account().map(str::to_string),
        Ok(Err(e)) => {
            tracing::debug!(error = %aws_sdk_sts::error::DisplayErrorContext(&e), "GetCallerIdentity failed");
            None
        }
        Err(_) => None,
    }
}

/// SDK configuration for an emulator on `endpoint`: the region, dummy static credentials
/// (`test`/`test`; emulators accept any) and the endpoint override. Never used for AWS.
pub async fn emulator_sdk_config(endpoint: &str, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "glidepath-emulator",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// Whether an endpoint URL points at this machine (`localhost`, 127.0.0.0/8, `[::1]`).
/// Seeding and dummy credentials are only ever allowed there.
pub fn is_loopback_endpoint(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints() {
        for url in [
            "http://127.0.0.1:4566",
            "http://localhost:4566/",
            "http://[::1]:4566",
            "http://127.1.2.3",
            "https://user@127.0.0.1:9",
        ] {
            assert!(is_loopback_endpoint(url), "{url}");
        }
        for url in [
            "https://s3.amazonaws.com",
            "http://10.0.0.1:4566",
            "http://localhost.evil.com:4566",
            "http://127.0.0.1.nip.io",
            "",
        ] {
            assert!(!is_loopback_endpoint(url), "{url}");
        }
    }
}
