//! SNS for `[notify]`: publish one release notification to the plan's topic.

use aws_types::SdkConfig;

/// The plan's `notify.sns_topic_arn`, ready to publish to.
#[derive(Debug, Clone)]
pub struct SnsTopic {
    client: aws_sdk_sns::Client,
    arn: String,
}

impl SnsTopic {
    pub fn new(config: &SdkConfig, arn: &str) -> SnsTopic {
        SnsTopic {
            client: aws_sdk_sns::Client::new(config),
            arn: arn.to_string(),
        }
    }

    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// Publish `message` with `subject`; the error says why (AWS's code and status, never
    /// the request).
    pub async fn publish(&self, subject: &str, message: &str) -> Result<(), String> {
        self.client
            .publish()
            .topic_arn(&self.arn)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match crate::errors::judge(&e, Some("the SNS topic")) {
                crate::errors::Fail::Precondition => "precondition failed".to_string(),
                crate::errors::Fail::NotFound(m)
                | crate::errors::Fail::Transient(m)
                | crate::errors::Fail::Fatal(m) => m,
            })
    }
}

/// Create the topic `arn` names (rehearsal seeding only); returns the ARN AWS gave it.
pub(crate) async fn create_topic(config: &SdkConfig, arn: &str) -> Result<String, String> {
    let name = arn.rsplit(':').next().unwrap_or(arn);
    let out = aws_sdk_sns::Client::new(config)
        .create_topic()
        .name(name)
        .send()
        .await
        .map_err(|e| match crate::errors::judge(&e, Some("the SNS topic")) {
            crate::errors::Fail::Precondition => "precondition failed".to_string(),
            crate::errors::Fail::NotFound(m)
            | crate::errors::Fail::Transient(m)
            | crate::errors::Fail::Fatal(m) => m,
        })?;
    Ok(out.topic_arn().unwrap_or_default().to_string())
}
