//! What went wrong talking to AWS, and what the engine should do about it.
//!
//! Every adapter turns an SDK error into a [`PortError`] here, so the rule for "retry or
//! stop" lives in one place. Messages carry the operation, the resource and AWS's own
//! error code and message — never a request body, a header or a credential.

use crate::engine::ports::PortError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::ErrorKind;

/// Errors from assembling the adapters (resolving the plan's names) before any port runs.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "{colour} target group {name:?} was not found in {region}; set [{colour}].target_group \
         in the plan to an existing target group's name or ARN"
    )]
    TargetGroupNotFound {
        colour: &'static str,
        name: String,
        region: String,
    },
    #[error(
        "{field} = {spec:?}: load balancer {load_balancer:?} was not found in {region}; use \
         \"<load-balancer-name>:<port>\" with an existing load balancer, or the listener's ARN"
    )]
    LoadBalancerNotFound {
        field: &'static str,
        spec: String,
        load_balancer: String,
        region: String,
    },
    #[error(
        "{field} = {spec:?}: load balancer {load_balancer:?} has no listener on port {port} \
         (it listens on: {available}); fix the port or use the listener's ARN"
    )]
    ListenerPortNotFound {
        field: &'static str,
        spec: String,
        load_balancer: String,
        port: i32,
        available: String,
    },
    #[error(
        "{field} = {spec:?}: listener not found in {region}; check the ARN, or use \
         \"<load-balancer-name>:<port>\""
    )]
    ListenerNotFound {
        field: &'static str,
        spec: String,
        region: String,
    },
    #[error(
        "{field} = {spec:?} is neither a listener ARN nor \"<load-balancer-name>:<port>\" \
         (e.g. \"shop-alb:443\")"
    )]
    BadListenerSpec { field: &'static str, spec: String },
    #[error(
        "traffic.rule_arn = {rule:?}: rule not found; check the ARN (aws elbv2 describe-rules \
         --listener-arn {listener})"
    )]
    RuleNotFound { rule: String, listener: String },
    #[error(
        "traffic.rule_arn = {rule:?} belongs to listener {rule_listener}, not to \
         traffic.listener ({listener}); point both at the same listener"
    )]
    RuleOnOtherListener {
        rule: String,
        rule_listener: String,
        listener: String,
    },
    #[error(
        "blue and green both resolve to target group {arn}; each colour needs its own target group"
    )]
    SameTargetGroup { arn: String },
    /// An AWS call failed while resolving (already classified).
    #[error("{0}")]
    Call(#[from] PortError),
}

impl AwsError {
    /// Whether retrying the same command later may succeed (throttling, outage).
    pub fn is_transient(&self) -> bool {
        matches!(self, AwsError::Call(e) if e.is_transient())
    }
}

/// Error codes AWS services use for "slow down" and "try again".
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    // S3: the clock was off; the SDK corrects its skew, so the next attempt is signed right.
    "RequestTimeTooSkewed",
    // S3: a conflicting operation on the same bucket or key is still in progress.
    "OperationAborted",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "ServerException",
    // S3: a concurrent conditional write raced ours; retrying gives a definite answer.
    "ConditionalRequestConflict",
];

/// The codes among [`TRANSIENT_CODES`] that mean "too many requests": the caller should send
/// fewer at once, not just wait and retry.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "SlowDown",
    "EC2ThrottledException",
];

/// Error codes that mean "the thing you named does not exist".
const NOT_FOUND_CODES: &[&str] = &[
    "NoSuchKey",
    "NotFound",
    "NoSuchBucket",
    "DBSnapshotNotFound",
    "DBSnapshotNotFoundFault",
    "DBClusterSnapshotNotFoundFault",
    "DBInstanceNotFound",
    "DBInstanceNotFoundFault",
    "DBClusterNotFoundFault",
    "TargetGroupNotFound",
    "ListenerNotFound",
    "LoadBalancerNotFound",
    "RuleNotFound",
    "ClusterNotFoundException",
    "ServiceNotFoundException",
    "ResourceNotFoundException",
];

/// The AWS error code of a service error, if any.
pub(crate) fn code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// The HTTP status of the response, if one arrived.
pub(crate) fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// An error and its causes, "a: b: c" (without the Debug dump DisplayErrorContext adds).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.ends_with(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

/// What a failed SDK call means, before it becomes a port's or the asset publisher's error.
/// The message names AWS's code and the HTTP status (and the resource, when given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fail {
    /// HTTP 412: a conditional write (`If-None-Match`, `If-Match`) found another object.
    Precondition,
    /// 404 or a "no such thing" code (NoSuchBucket too: the message says which).
    NotFound(String),
    /// Throttling (SlowDown included), 5xx, timeouts, connection trouble: retry with backoff.
    Transient(String),
    /// Permissions, validation, configuration: retrying cannot help.
    Fatal(String),
}

/// The one classifier of SDK errors. `resource` (e.g. `"DB snapshot shop-db-r1"`) is added
/// to the message when the caller's own message does not already name it.
pub(crate) fn judge<E>(err: &SdkError<E, HttpResponse>, resource: Option<&str>) -> Fail
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let about = resource.map(|r| format!(" about {r}")).unwrap_or_default();
    let st = status(err).unwrap_or(0);
    match err {
        SdkError::TimeoutError(_) => Fail::Transient(format!("timed out talking to AWS{about}")),
        SdkError::DispatchFailure(d) => {
            let transient = d.is_io()
                || d.is_timeout()
                || matches!(
                    d.as_other(),
                    Some(
                        ErrorKind::TransientError
                            | ErrorKind::ServerError
                            | ErrorKind::ThrottlingError
                    )
                );
            let message = format!("request{about} not sent: {}", chain(err));
            if transient {
                Fail::Transient(message)
            } else {
                // e.g. no credentials, a malformed endpoint URL: retrying cannot help.
                Fail::Fatal(message)
            }
        }
        SdkError::ConstructionFailure(_) => Fail::Fatal(format!(
            "could not build the request{about}: {}",
            chain(err)
        )),
        SdkError::ResponseError(_) => {
            let message = format!("unreadable answer (HTTP {st}){about}: {}", chain(err));
            match st {
                412 => Fail::Precondition,
                404 => Fail::NotFound(message),
                // A 4xx we could not read is still a refusal; anything else (no status, a
                // 2xx cut off mid-body, 5xx) is the connection or the service having trouble.
                400..=499 if st != 429 => Fail::Fatal(message),
                _ => Fail::Transient(message),
            }
        }
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("");
            let text = se.err().message().unwrap_or("");
            let at = resource.map(|r| format!(", {r}")).unwrap_or_default();
            let message = match (code.is_empty(), text.is_empty()) {
                (false, false) => format!("{code}: {text} (HTTP {st}{at})"),
                (false, true) => format!("{code} (HTTP {st}{at})"),
                (true, false) => format!("{text} (HTTP {st}{at})"),
                (true, true) => format!("HTTP {st}{about}"),
            };
            if st == 412 || code == "PreconditionFailed" {
                Fail::Precondition
            } else if TRANSIENT_CODES.contains(&code) || st >= 500 || st == 429 {
                Fail::Transient(message)
            } else if NOT_FOUND_CODES.contains(&code) || st == 404 {
                Fail::NotFound(message)
            } else {
                Fail::Fatal(message)
            }
        }
        // `SdkError` is non-exhaustive.
        _ => Fail::Fatal(format!(
            "{}{}",
            resource.map(|r| format!("{r}: ")).unwrap_or_default(),
            chain(err)
        )),
    }
}

/// Whether the service pushed back (throttling codes, S3's 503 SlowDown, 429, a bare 503):
/// a [`Fail::Transient`] that also asks for fewer requests in flight.
pub(crate) fn throttled<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    matches!(status(err), Some(503 | 429))
        || code(err).is_some_and(|c| THROTTLING_CODES.contains(&c))
}

/// Classify an SDK error for the engine. `operation` names the call (e.g.
/// `"ecs:RunTask"`), `resource` the thing it was about (used for NotFound).
pub(crate) fn classify<E>(
    operation: &str,
    resource: &str,
    err: SdkError<E, HttpResponse>,
) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let operation = operation.to_string();
    match judge(&err, Some(resource)) {
        Fail::Transient(message) => PortError::Transient { operation, message },
        Fail::NotFound(_) => PortError::NotFound {
            operation,
            resource: resource.to_string(),
        },
        // Adapters that write conditionally look for 412 before classifying.
        Fail::Precondition => PortError::Fatal {
            operation,
            message: format!("precondition failed (HTTP 412, {resource})"),
        },
        Fail::Fatal(message) => PortError::Fatal { operation, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    /// A stand-in service error carrying only metadata, like the SDK's `Unhandled` variant.
    #[derive(Debug)]
    struct Svc(ErrorMetadata);
    impl std::fmt::Display for Svc {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "service error")
        }
    }
    impl std::error::Error for Svc {}
    impl ProvideErrorMetadata for Svc {
        fn meta(&self) -> &ErrorMetadata {
            &self.0
        }
    }

    fn service(code: &str, status: u16) -> SdkError<Svc, HttpResponse> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("detail")
            .build();
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(Svc(meta), raw)
    }

    #[test]
    fn throttling_and_5xx_are_transient() {
        assert!(classify("op", "r", service("Throttling", 400)).is_transient());
        assert!(classify("op", "r", service("ServiceUnavailable", 503)).is_transient());
        assert!(classify("op", "r", service("Whatever", 502)).is_transient());
        assert!(classify("op", "r", service("", 429)).is_transient());
    }

    /// S3's own ways of saying "slow down" or "try again", some with a 4xx status.
    #[test]
    fn s3_throttling_and_timeouts_are_transient() {
        for (code, status) in [
            ("SlowDown", 503),
            ("", 503),
            ("RequestTimeout", 400),
            ("RequestTimeTooSkewed", 403),
            ("OperationAborted", 409),
            ("ConditionalRequestConflict", 409),
            ("BandwidthLimitExceeded", 400),
            ("InternalError", 500),
        ] {
            assert!(
                matches!(judge(&service(code, status), None), Fail::Transient(_)),
                "{code} {status}"
            );
            assert!(
                classify("s3:PutObject", "s3://b/k", service(code, status)).is_transient(),
                "{code} {status}"
            );
        }
    }

    #[test]
    fn pushback_is_told_from_other_transient_errors() {
        for (code, st) in [
            ("SlowDown", 503),
            ("", 503),
            ("Throttling", 400),
            ("", 429),
            ("RequestLimitExceeded", 400),
        ] {
            assert!(throttled(&service(code, st)), "{code} {st}");
        }
        for (code, st) in [
            ("InternalError", 500),
            ("RequestTimeout", 400),
            ("AccessDenied", 403),
        ] {
            assert!(!throttled(&service(code, st)), "{code} {st}");
        }
        // Every throttling code is also transient, so it is retried as well as slowed.
        for c in THROTTLING_CODES {
            assert!(TRANSIENT_CODES.contains(c), "{c}");
        }
    }

    #[test]
    fn s3_preconditions_and_missing_keys_and_buckets_are_told_apart() {
        assert_eq!(
            judge(&service("PreconditionFailed", 412), None),
            Fail::Precondition
        );
        match judge(&service("NoSuchBucket", 404), None) {
            Fail::NotFound(m) => assert!(m.starts_with("NoSuchBucket: detail (HTTP 404"), "{m}"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert!(matches!(
            judge(&service("NoSuchKey", 404), None),
            Fail::NotFound(_)
        ));
        match judge(&service("AccessDenied", 403), None) {
            Fail::Fatal(m) => assert_eq!(m, "AccessDenied: detail (HTTP 403)"),
            other => panic!("expected Fatal, got {other:?}"),
        }
    }

    #[test]
    fn missing_things_are_not_found_with_the_resource_named() {
        let e = classify(
            "rds:DescribeDBSnapshots",
            "DB snapshot shop-db-r1",
            service("DBSnapshotNotFound", 404),
        );
        assert_eq!(
            e,
            PortError::NotFound {
                operation: "rds:DescribeDBSnapshots".into(),
                resource: "DB snapshot shop-db-r1".into()
            }
        );
    }

    #[test]
    fn validation_and_access_are_fatal_and_carry_the_code() {
        let e = classify("ecs:RunTask", "task", service("AccessDeniedException", 400));
        match e {
            PortError::Fatal { message, .. } => {
                assert!(
                    message.contains("AccessDeniedException: detail"),
                    "{message}"
                )
            }
            other => panic!("expected Fatal, got {other:?}"),
        }
    }

    #[test]
    fn io_and_timeouts_are_transient_but_missing_credentials_are_not() {
        let io: SdkError<Svc, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io("connection refused".into()));
        let e = classify("op", "r", io);
        assert!(e.is_transient());
        let text = e.to_string();
        assert!(
            text.contains("io error: connection refused") && !text.contains("DispatchFailure {"),
            "{text}"
        );
        let timeout: SdkError<Svc, HttpResponse> = SdkError::timeout_error("slow");
        assert!(classify("op", "r", timeout).is_transient());
        let creds = || -> SdkError<Svc, HttpResponse> {
            SdkError::dispatch_failure(ConnectorError::other("no credentials".into(), None))
        };
        assert!(!classify("op", "r", creds()).is_transient());
        // The asset publisher's S3 calls get the same answer: no retrying without credentials.
        assert!(matches!(judge(&creds(), None), Fail::Fatal(_)));
    }
}
