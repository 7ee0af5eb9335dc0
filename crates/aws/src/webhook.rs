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

/// The first I/O error kind in the chain, or a generic phrase: never the client's text.
fn describe(e: &hyper_util::client::legacy::Error) -> String {
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
