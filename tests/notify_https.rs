//! The `[notify]` webhook over https on loopback: a CA and a server certificate made in
//! the test (rcgen), a TLS server on a thread (rustls). The webhook client trusts the
//! system's roots, or the PEM bundle in `SSL_CERT_FILE` (docs/plan.md): with the test's CA
//! there the notice arrives; with another CA the handshake is refused, in words that say
//! what to do and never the URL. A plain http:// URL to another machine is refused.

use glidepath::aws::webhook::{Webhook, WebhookError};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A CA named `name` (its PEM), and a certificate for 127.0.0.1 it signed with that
/// certificate's key.
fn ca_and_server_cert(name: &str) -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let key = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
    (ca.pem(), cert.der().clone(), key)
}

/// An https webhook on loopback with `cert`; its URL and the bodies it got.
fn https_hook(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://{}/hooks/T0/B0/secret-token",
        listener.local_addr().unwrap()
    );
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let got = bodies.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming().map_while(Result::ok) {
            let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, sock);
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // A refused handshake ends in a read error: on to the next connection.
            while let Ok(n) = tls.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(body) = complete_body(&buf) {
                    got.lock().unwrap().push(body);
                    let _ = tls.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    );
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                    break;
                }
            }
        }
    });
    (url, bodies)
}

/// The body of a complete HTTP/1.1 request in `buf`, once it has all arrived.
fn complete_body(buf: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(buf);
    let end = text.find("\r\n\r\n")?;
    let len = text[..end]
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        })
        .unwrap_or(0);
    (buf.len() >= end + 4 + len).then(|| text[end + 4..end + 4 + len].to_string())
}

#[tokio::test]
async fn an_https_webhook_is_trusted_through_ssl_cert_file_and_refused_without_it() {
    let (ca, cert, key) = ca_and_server_cert("glidepath test CA");
    let (other_ca, _, _) = ca_and_server_cert("some other CA");
    let (url, bodies) = https_hook(cert, key);
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("ca.pem"), dir.path().join("other.pem"));
    std::fs::write(&ours, ca).unwrap();
    std::fs::write(&theirs, other_ca).unwrap();
    let body = r#"{"text":"shop/rehearsal release r1 1.4.0: finalized"}"#;

    // The roots are read when the client is made (this process runs only this test).
    std::env::set_var("SSL_CERT_FILE", &theirs);
    let untrusted = Webhook::new(&url).expect("an https URL");
    let err = untrusted.post(body.into()).await.unwrap_err();
    assert!(
        err.contains("not signed by a trusted CA") && err.contains("SSL_CERT_FILE"),
        "{err}"
    );
    assert!(
        !err.contains("secret-token") && !err.contains("127.0.0.1"),
        "{err}"
    );
    assert!(bodies.lock().unwrap().is_empty(), "nothing sent before TLS");

    std::env::set_var("SSL_CERT_FILE", &ours);
    let trusted = Webhook::new(&url).expect("an https URL");
    trusted.post(body.into()).await.expect("delivered over TLS");
    assert_eq!(*bodies.lock().unwrap(), [body.to_string()]);
    std::env::remove_var("SSL_CERT_FILE");
}

#[test]
fn plain_http_only_to_this_machine() {
    for remote in [
        "http://hooks.example.com/services/T0/B0/secret-token",
        "http://10.0.0.7:8080/secret-token",
        "http://[2001:db8::1]/secret-token",
    ] {
        let e = Webhook::new(remote).err();
        assert_eq!(e, Some(WebhookError::PlainHttp), "{remote}");
        let m = e.unwrap().to_string();
        assert!(
            m.contains("http://") && !m.contains("secret-token") && !m.contains("example"),
            "{m}"
        );
    }
    for local in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
        "https://hooks.example.com/services/T0/B0/x",
    ] {
        assert!(Webhook::new(local).is_ok(), "{local}");
    }
}

/// The plan-level check names the variable and says what to set, without the URL.
#[test]
fn a_plain_http_remote_webhook_is_a_usage_error_before_any_change() {
    std::env::set_var(
        "GLIDEPATH_TEST_HOOK_PLAIN",
        "http://hooks.example.com/services/T0/B0/secret-token",
    );
    let cfg = glidepath::plan::NotifyConfig {
        sns_topic_arn: None,
        webhook_env: Some("GLIDEPATH_TEST_HOOK_PLAIN".into()),
        events: glidepath::plan::NotifyEvent::ALL.to_vec(),
        timeout: Duration::from_secs(5),
        attempts: 3,
    };
    let e = glidepath::notify::webhook(&cfg).err().expect("refused");
    assert_eq!(e.code, 2);
    let m = e.message.unwrap();
    assert!(
        m.contains("$GLIDEPATH_TEST_HOOK_PLAIN")
            && m.contains("https://")
            && !m.contains("secret-token"),
        "{m}"
    );
}
