//! A Slack-compatible incoming webhook for `[notify]`: one JSON POST per notification.
//!
//! The URL is a secret (it grants posting to the channel): nothing here puts it, or any of
//! the HTTP client's own messages (which may quote it), into an error.

use http_body_util::Full;
use hyper::body::Bytes;
use std::sync::Arc;

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// Why a webhook URL cannot be used; deliberately without the URL.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("is not an http(s) URL")]
    NotHttp,
    /// The URL and the notices would cross the network in clear text.
    #[error("is a plain http:// URL to another machine (http:// is only for a webhook on this machine's loopback; the URL is a secret)")]
    PlainHttp,
    #[error("cannot load the system's TLS root certificates ({0})")]
    Roots(String),
}

pub struct Webhook {
    url: hyper::Uri,
    client: Client,
}

impl Webhook {
    /// A client for `url` (http:// or https://, with a host).
    pub fn new(url: &str) -> Result<Webhook, WebhookError> {
        let url = match url.trim().parse::<hyper::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => u,
            _ => return Err(WebhookError::NotHttp),
        };
        if url.scheme_str() == Some("http") && !url.host().is_some_and(is_loopback) {
            return Err(WebhookError::PlainHttp);
        }
        // The SDK builds rustls with aws-lc-rs; the same provider, so no other is compiled.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(b) => b,
            Err(e) if url.scheme_str() == Some("https") => {
                return Err(WebhookError::Roots(e.kind().to_string()))
            }
            // A plain http:// hook needs no roots (a machine may have none installed).
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| WebhookError::Roots(e.to_string()))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
        };
        let https = builder.https_or_http().enable_http1().build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Ok(Webhook { url, client })
    }

    /// POST `json`; Ok on a 2xx answer, else what went wrong in our own words.
    pub async fn post(&self, json: String) -> Result<(), String> {
        let request = hyper::Request::post(self.url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(json)))
            .map_err(|_| "cannot build the request".to_string())?;
        match self.client.request(request).await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
            Err(e) => Err(describe(&e)),
        }
    }
}

/// `localhost` or a loopback address (`127.0.0.1`, `[::1]`).
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The first I/O error kind in the chain (or what TLS refused), or a generic phrase: never
/// the client's text.
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    if let Some(tls) = tls_error(e) {
        return tls_failure(tls);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return format!("could not connect ({})", io.kind());
        }
        source = s.source();
    }
    if e.is_connect() {
        "could not connect".into()
    } else {
        "the request failed".into()
    }
}

/// The TLS error in the chain, if any. An I/O error's inner error is not in its source
/// chain, so look inside those too.
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| tls_error(i));
        if inner.is_some() {
            return inner;
        }
        source = s.source();
    }
    None
}

/// Why the TLS handshake failed, in our words (rustls's may name the host).
fn tls_failure(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let why = match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "its certificate is not signed by a trusted CA (for a private CA, point SSL_CERT_FILE at a PEM bundle that holds it)"
        }
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            "its certificate is not valid for the URL's host"
        }
        rustls::Error::InvalidCertificate(C::Expired)
        | rustls::Error::InvalidCertificate(C::ExpiredContext { .. }) => {
            "its certificate has expired"
        }
        rustls::Error::InvalidCertificate(_) => "its certificate was refused",
        _ => "the TLS handshake failed",
    };
    format!("TLS: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_with_a_host() {
        for bad in ["", "hooks.example.com/x", "ftp://h/x", "https://"] {
            assert_eq!(
                Webhook::new(bad).err(),
                Some(WebhookError::NotHttp),
                "{bad}"
            );
        }
    }
}
