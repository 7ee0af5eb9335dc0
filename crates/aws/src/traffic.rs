//! `Traffic` over ELBv2: blue/green forward weights of the listener's default action, or
//! of one listener rule when the plan names a rule. The weights on the load balancer are
//! the whole state, so both directions read AWS and nothing is cached.

use super::errors::classify;
use crate::engine::ports::{PortError, PortResult, Traffic, Weights};
use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2 as elbv2;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple,
};

pub struct ElbTraffic {
    client: elbv2::Client,
    listener_arn: String,
    rule_arn: Option<String>,
    /// The plan's test listener (`traffic.test_listener`), pointed at the colour being
    /// released before the smoke test.
    test_listener_arn: Option<String>,
    blue: String,
    green: String,
}

impl ElbTraffic {
    pub fn new(
        client: elbv2::Client,
        listener_arn: &str,
        rule_arn: Option<&str>,
        blue_target_group_arn: &str,
        green_target_group_arn: &str,
    ) -> Self {
        ElbTraffic {
            client,
            listener_arn: listener_arn.to_string(),
            rule_arn: rule_arn.map(str::to_string),
            test_listener_arn: None,
            blue: blue_target_group_arn.to_string(),
            green: green_target_group_arn.to_string(),
        }
    }

    /// Also manage the test listener (its default forward action).
    pub fn with_test_listener(mut self, test_listener_arn: Option<&str>) -> Self {
        self.test_listener_arn = test_listener_arn.map(str::to_string);
        self
    }

    /// The test listener's default actions (None without a test listener).
    async fn test_actions(&self) -> PortResult<Option<(String, Vec<Action>)>> {
        let Some(arn) = &self.test_listener_arn else {
            return Ok(None);
        };
        const OP: &str = "elbv2:DescribeListeners";
        let what = format!("test listener {arn}");
        let out = self
            .client
            .describe_listeners()
            .listener_arns(arn)
            .send()
            .await
            .map_err(|e| classify(OP, &what, e))?;
        let l = out.listeners().first().ok_or_else(|| PortError::NotFound {
            operation: OP.into(),
            resource: what.clone(),
        })?;
        Ok(Some((arn.clone(), l.default_actions().to_vec())))
    }

    /// What we step: "rule <arn>" or "listener <arn>" (for messages).
    fn what(&self) -> String {
        match &self.rule_arn {
            Some(rule) => format!("rule {rule}"),
            None => format!("listener {}", self.listener_arn),
        }
    }

    async fn actions(&self) -> PortResult<Vec<Action>> {
        let missing = |operation: &str| PortError::NotFound {
            operation: operation.into(),
            resource: self.what(),
        };
        match &self.rule_arn {
            Some(rule) => {
                const OP: &str = "elbv2:DescribeRules";
                let out = self
                    .client
                    .describe_rules()
                    .rule_arns(rule)
                    .send()
                    .await
                    .map_err(|e| classify(OP, &self.what(), e))?;
                let r = out.rules().first().ok_or_else(|| missing(OP))?;
                Ok(r.actions().to_vec())
            }
            None => {
                const OP: &str = "elbv2:DescribeListeners";
                let out = self
                    .client
                    .describe_listeners()
                    .listener_arns(&self.listener_arn)
                    .send()
                    .await
                    .map_err(|e| classify(OP, &self.what(), e))?;
                let l = out.listeners().first().ok_or_else(|| missing(OP))?;
                Ok(l.default_actions().to_vec())
            }
        }
    }

    /// Every target group the stepped forward action names, with its weight (read only;
    /// `glidepath diff` checks them against the plan's).
    pub async fn forwards(&self) -> PortResult<Vec<(String, u32)>> {
        let actions = self.actions().await?;
        forward_groups(&actions).map_err(|m| self.fatal("elbv2:DescribeListeners", m.into()))
    }

    fn fatal(&self, operation: &str, message: String) -> PortError {
        PortError::Fatal {
            operation: operation.into(),
            message: format!("{}: {message}", self.what()),
        }
    }
}

fn is_forward(a: &Action) -> bool {
    a.r#type() == Some(&ActionTypeEnum::Forward)
}

/// (target group ARN, weight) of the forward action; Err names what is wrong with it.
fn forward_groups(actions: &[Action]) -> Result<Vec<(String, u32)>, &'static str> {
    let forward = actions
        .iter()
        .find(|a| is_forward(a))
        .ok_or("has no forward action")?;
    let groups: Vec<(String, u32)> = match forward.forward_config() {
        Some(fc) if !fc.target_groups().is_empty() => fc
            .target_groups()
            .iter()
            .map(|t| {
                (
                    t.target_group_arn().unwrap_or_default().to_string(),
                    // ELBv2's default weight is 1.
                    t.weight().unwrap_or(1).max(0) as u32,
                )
            })
            .collect(),
        _ => match forward.target_group_arn() {
            Some(arn) => vec![(arn.to_string(), 1)],
            None => return Err("forward action names no target group"),
        },
    };
    Ok(groups)
}

/// Blue/green percent from a forward action; Err names what is wrong with it.
fn read_weights(actions: &[Action], blue: &str, green: &str) -> Result<Weights, String> {
    let groups = forward_groups(actions)?;
    let (mut b, mut g) = (0u32, 0u32);
    for (arn, weight) in &groups {
        if arn == blue {
            b += weight;
        } else if arn == green {
            g += weight;
        } else if *weight > 0 {
            return Err(format!(
                "forwards to {arn}, which is neither the blue nor the green target group; \
                 point the forward action at the plan's target groups first"
            ));
        }
    }
    if b + g == 0 {
        return Err("forwards no weight to blue or green".into());
    }
    let green_pct = ((g as f64) * 100.0 / ((b + g) as f64)).round() as u8;
    Ok(Weights::green(green_pct))
}

/// The same actions with the forward action split between blue and green by `w`
/// (other actions, their order and the stickiness config stay as they were).
fn with_weights(
    actions: &[Action],
    blue: &str,
    green: &str,
    w: Weights,
) -> Result<Vec<Action>, String> {
    let mut out = actions.to_vec();
    let forward = out
        .iter_mut()
        .find(|a| is_forward(a))
        .ok_or("has no forward action")?;
    let stickiness = forward
        .forward_config()
        .and_then(|fc| fc.target_group_stickiness_config())
        .cloned();
    forward.target_group_arn = None;
    forward.forward_config = Some(
        ForwardActionConfig::builder()
            .target_groups(
                TargetGroupTuple::builder()
                    .target_group_arn(blue)
                    .weight(i32::from(w.blue))
                    .build(),
            )
            .target_groups(
                TargetGroupTuple::builder()
                    .target_group_arn(green)
                    .weight(i32::from(w.green))
                    .build(),
            )
            .set_target_group_stickiness_config(stickiness)
            .build(),
    );
    Ok(out)
}

#[async_trait]
impl Traffic for ElbTraffic {
    async fn weights(&self) -> PortResult<Weights> {
        let actions = self.actions().await?;
        read_weights(&actions, &self.blue, &self.green)
            .map_err(|m| self.fatal("elbv2:DescribeListeners", m))
    }

    async fn set_weights(&self, weights: Weights) -> PortResult<()> {
        if u16::from(weights.blue) + u16::from(weights.green) != 100 {
            return Err(self.fatal(
                "elbv2:ModifyListener",
                format!(
                    "weights {}/{} do not sum to 100",
                    weights.blue, weights.green
                ),
            ));
        }
        let actions = self.actions().await?;
        let actions = with_weights(&actions, &self.blue, &self.green, weights)
            .map_err(|m| self.fatal("elbv2:ModifyListener", m))?;
        match &self.rule_arn {
            Some(rule) => self
                .client
                .modify_rule()
                .rule_arn(rule)
                .set_actions(Some(actions))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("elbv2:ModifyRule", &self.what(), e)),
            None => self
                .client
                .modify_listener()
                .listener_arn(&self.listener_arn)
                .set_default_actions(Some(actions))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("elbv2:ModifyListener", &self.what(), e)),
        }
    }

    async fn test_weights(&self) -> PortResult<Option<Weights>> {
        let Some((arn, actions)) = self.test_actions().await? else {
            return Ok(None);
        };
        read_weights(&actions, &self.blue, &self.green)
            .map(Some)
            .map_err(|m| PortError::Fatal {
                operation: "elbv2:DescribeListeners".into(),
                message: format!("test listener {arn}: {m}"),
            })
    }

    async fn set_test_weights(&self, weights: Weights) -> PortResult<()> {
        let Some((arn, actions)) = self.test_actions().await? else {
            return Ok(());
        };
        const OP: &str = "elbv2:ModifyListener";
        let what = format!("test listener {arn}");
        let mut actions =
            with_weights(&actions, &self.blue, &self.green, weights).map_err(|m| {
                PortError::Fatal {
                    operation: OP.into(),
                    message: format!("{what}: {m}"),
                }
            })?;
        // The test listener forwards only to the colour(s) with weight: no zero-weight
        // tuple that someone could mistake for a second destination.
        for a in actions.iter_mut().filter(|a| is_forward(a)) {
            if let Some(fc) = a.forward_config.as_mut() {
                if let Some(groups) = fc.target_groups.as_mut() {
                    groups.retain(|t| t.weight().unwrap_or(1) > 0);
                }
            }
        }
        self.client
            .modify_listener()
            .listener_arn(&arn)
            .set_default_actions(Some(actions))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(OP, &what, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_elasticloadbalancingv2::types::TargetGroupStickinessConfig;

    const B: &str = "arn:tg/blue";
    const G: &str = "arn:tg/green";

    fn forward(groups: &[(&str, i32)]) -> Action {
        let mut fc = ForwardActionConfig::builder();
        for (arn, w) in groups {
            fc = fc.target_groups(
                TargetGroupTuple::builder()
                    .target_group_arn(*arn)
                    .weight(*w)
                    .build(),
            );
        }
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(fc.build())
            .build()
    }

    #[test]
    fn weights_are_percent_of_blue_and_green() {
        assert_eq!(
            read_weights(&[forward(&[(B, 90), (G, 10)])], B, G),
            Ok(Weights::green(10))
        );
        assert_eq!(
            read_weights(&[forward(&[(B, 1), (G, 1)])], B, G),
            Ok(Weights::green(50))
        );
        assert_eq!(
            read_weights(&[forward(&[(G, 5)])], B, G),
            Ok(Weights::green(100))
        );
        let plain = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(B)
            .build();
        assert_eq!(read_weights(&[plain], B, G), Ok(Weights::all_blue()));
    }

    #[test]
    fn foreign_or_missing_forwarding_is_an_error() {
        let err = read_weights(&[forward(&[(B, 50), ("arn:tg/other", 50)])], B, G).unwrap_err();
        assert!(err.contains("arn:tg/other"), "{err}");
        assert!(read_weights(&[forward(&[(B, 0), (G, 0)])], B, G).is_err());
        let fixed = Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .build();
        assert!(read_weights(&[fixed], B, G).is_err());
    }

    #[test]
    fn set_keeps_stickiness_and_other_actions() {
        let sticky = TargetGroupStickinessConfig::builder()
            .enabled(true)
            .duration_seconds(300)
            .build();
        let auth = Action::builder()
            .r#type(ActionTypeEnum::AuthenticateOidc)
            .order(1)
            .build();
        let mut fwd = forward(&[(B, 100)]);
        fwd.order = Some(2);
        if let Some(fc) = fwd.forward_config.as_mut() {
            fc.target_group_stickiness_config = Some(sticky.clone());
        }
        let out = with_weights(&[auth.clone(), fwd], B, G, Weights::green(25)).unwrap();
        assert_eq!(out[0], auth);
        assert_eq!(out[1].order(), Some(2));
        let fc = out[1].forward_config().unwrap();
        assert_eq!(fc.target_group_stickiness_config(), Some(&sticky));
        assert_eq!(read_weights(&out, B, G), Ok(Weights::green(25)));
    }
}
