//! Endpoint overrides. A rehearsal plan points at the local stage; a production plan must
//! talk to real AWS, so a loopback or emulator endpoint next to `production = true` is
//! refused — in the plan file and on the command line alike.

use super::names::Problem;
use super::{Plan, PlanError};

/// Host and port of an `http(s)://host[:port][/path]` URL.
pub fn host_port(url: &str) -> Result<(String, Option<u16>), Problem> {
    let bad = || Problem {
        message: format!("`{url}` is not an http(s) URL"),
        hint: Some("write it like \"http://127.0.0.1:4566\"".into()),
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| bad())?),
        None => None,
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// Why `url` looks like a local emulator rather than AWS, if it does.
pub fn emulator_reason(url: &str) -> Option<String> {
    let (host, port) = host_port(url).ok()?;
    let loopback = host == "localhost"
        || host.ends_with(".localhost")
        || host.starts_with("127.")
        || host == "::1"
        || host == "0.0.0.0"
        || host == "host.docker.internal";
    if loopback {
        return Some(format!("`{host}` is this machine (loopback)"));
    }
    if host == "localstack" || host.ends_with(".localstack.cloud") {
        return Some(format!("`{host}` is a LocalStack emulator"));
    }
    if port == Some(4566) {
        return Some("port 4566 is the emulator port (the stage, LocalStack)".into());
    }
    None
}

/// Refuse an endpoint override (e.g. `--endpoint-url` / `AWS_ENDPOINT_URL`) that would
/// send a production plan's calls to an emulator. Commands call this before any AWS call.
pub fn check_endpoint(plan: &Plan, endpoint: Option<&str>) -> Result<(), PlanError> {
    let Some(url) = endpoint else {
        return Ok(());
    };
    let file = plan.source.display();
    if let Err(p) = host_port(url) {
        return Err(PlanError {
            message: format!(
                "{file}: error: endpoint override {}\n  = hint: check --endpoint-url / AWS_ENDPOINT_URL",
                p.message
            ),
        });
    }
    if !plan.production {
        return Ok(());
    }
    match emulator_reason(url) {
        Some(why) => Err(PlanError {
            message: format!(
                "{file}: error: refusing to run production plan `{}/{}` against {url}: {why}\n  \
                 = hint: a production release must reach real AWS; unset AWS_ENDPOINT_URL or drop \
                 --endpoint-url (rehearse with a non-production plan instead)",
                plan.app, plan.environment
            ),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulators_are_recognised() {
        for url in [
            "http://127.0.0.1:4566",
            "http://localhost:5000",
            "https://LOCALHOST",
            "http://[::1]:4566/",
            "http://0.0.0.0:9000",
            "http://localstack:4566",
            "https://s3.localhost.localstack.cloud:4566",
            "http://10.0.0.5:4566",
        ] {
            assert!(emulator_reason(url).is_some(), "{url}");
        }
        for url in [
            "https://s3.eu-west-1.amazonaws.com",
            "https://vpce-0a1b2c3d-s3.eu-west-1.vpce.amazonaws.com",
            "http://10.0.0.5:8080",
        ] {
            assert!(emulator_reason(url).is_none(), "{url}");
        }
    }

    #[test]
    fn urls_are_parsed_or_refused() {
        assert_eq!(host_port("http://a:1/x").unwrap(), ("a".into(), Some(1)));
        assert_eq!(host_port("https://user@h").unwrap(), ("h".into(), None));
        for bad in [
            "127.0.0.1:4566",
            "ftp://x",
            "http://",
            "http://h:port",
            "http://[::1",
        ] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
    }
}
