//! Rehearsals: start and stop the local stage ([`stage`]), seed it with the plan's world
//! ([`seed`]), and build SDK configuration that talks to an emulator.

pub mod seed;
pub mod stage;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_types::SdkConfig;

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
