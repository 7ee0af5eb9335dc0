//! Turn the plan's names into ARNs, once per command: target groups by name or ARN, the
//! listener by ARN or `"<load-balancer-name>:<port>"`, the load balancer from the listener.
//! A name that does not resolve is an [`AwsError`] that says which plan field to fix.

use super::errors::{classify, AwsError};
use super::Resolved;
use crate::engine::ports::PortError;
use crate::plan::Plan;
use aws_sdk_elasticloadbalancingv2 as elbv2;

/// Resolve every ELBv2 name the plan uses.
pub async fn resolve(elb: &elbv2::Client, plan: &Plan) -> Result<Resolved, AwsError> {
    let blue = target_group(elb, "blue", &plan.blue.target_group, &plan.region).await?;
    let green = target_group(elb, "green", &plan.green.target_group, &plan.region).await?;
    if blue == green {
        return Err(AwsError::SameTargetGroup { arn: blue });
    }
    let (listener_arn, load_balancer_arn) = listener(
        elb,
        "traffic.listener",
        &plan.traffic.listener,
        &plan.region,
    )
    .await?;
    let rule_arn = match &plan.traffic.rule_arn {
        Some(rule) => Some(rule_on_listener(elb, rule, &listener_arn).await?),
        None => None,
    };
    let test_listener_arn = match &plan.traffic.test_listener {
        Some(spec) => Some(
            listener(elb, "traffic.test_listener", spec, &plan.region)
                .await?
                .0,
        ),
        None => None,
    };
    Ok(Resolved {
        blue_target_group_arn: blue,
        green_target_group_arn: green,
        listener_arn,
        load_balancer_arn,
        rule_arn,
        test_listener_arn,
    })
}

/// A target group's ARN from its name or ARN (an ARN is checked to exist).
pub(crate) async fn target_group(
    elb: &elbv2::Client,
    colour: &'static str,
    spec: &str,
    region: &str,
) -> Result<String, AwsError> {
    let req = elb.describe_target_groups();
    let req = if spec.starts_with("arn:") {
        req.target_group_arns(spec)
    } else {
        req.names(spec)
    };
    let not_found = || AwsError::TargetGroupNotFound {
        colour,
        name: spec.to_string(),
        region: region.to_string(),
    };
    let out = match req.send().await {
        Ok(out) => out,
        Err(e) => {
            return Err(
                match classify(
                    "elbv2:DescribeTargetGroups",
                    &format!("target group {spec}"),
                    e,
                ) {
                    PortError::NotFound { .. } => not_found(),
                    other => other.into(),
                },
            )
        }
    };
    out.target_groups()
        .first()
        .and_then(|tg| tg.target_group_arn())
        .map(str::to_string)
        .ok_or_else(not_found)
}

/// How the plan names a listener.
#[derive(Debug, PartialEq, Eq)]
enum ListenerSpec<'a> {
    Arn(&'a str),
    Port { load_balancer: &'a str, port: i32 },
}

fn parse_listener<'a>(field: &'static str, spec: &'a str) -> Result<ListenerSpec<'a>, AwsError> {
    if spec.starts_with("arn:") {
        return Ok(ListenerSpec::Arn(spec));
    }
    let bad = || AwsError::BadListenerSpec {
        field,
        spec: spec.to_string(),
    };
    let (lb, port) = spec.rsplit_once(':').ok_or_else(bad)?;
    let port: i32 = port.parse().map_err(|_| bad())?;
    if lb.is_empty() || !(1..=65535).contains(&port) {
        return Err(bad());
    }
    Ok(ListenerSpec::Port {
        load_balancer: lb,
        port,
    })
}

/// (listener ARN, load balancer ARN) for a listener ARN or `"<lb-name>:<port>"`.
pub(crate) async fn listener(
    elb: &elbv2::Client,
    field: &'static str,
    spec: &str,
    region: &str,
) -> Result<(String, String), AwsError> {
    match parse_listener(field, spec)? {
        ListenerSpec::Arn(arn) => {
            let not_found = || AwsError::ListenerNotFound {
                field,
                spec: spec.to_string(),
                region: region.to_string(),
            };
            let out = match elb.describe_listeners().listener_arns(arn).send().await {
                Ok(out) => out,
                Err(e) => {
                    return Err(
                        match classify("elbv2:DescribeListeners", &format!("listener {arn}"), e) {
                            PortError::NotFound { .. } => not_found(),
                            other => other.into(),
                        },
                    )
                }
            };
            let l = out.listeners().first().ok_or_else(not_found)?;
            match (l.listener_arn(), l.load_balancer_arn()) {
                (Some(a), Some(lb)) => Ok((a.to_string(), lb.to_string())),
                _ => Err(not_found()),
            }
        }
        ListenerSpec::Port {
            load_balancer,
            port,
        } => {
            let lb_not_found = || AwsError::LoadBalancerNotFound {
                field,
                spec: spec.to_string(),
                load_balancer: load_balancer.to_string(),
                region: region.to_string(),
            };
            let lbs = match elb
                .describe_load_balancers()
                .names(load_balancer)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    let what = format!("load balancer {load_balancer}");
                    return Err(match classify("elbv2:DescribeLoadBalancers", &what, e) {
                        PortError::NotFound { .. } => lb_not_found(),
                        other => other.into(),
                    });
                }
            };
            let lb_arn = lbs
                .load_balancers()
                .first()
                .and_then(|lb| lb.load_balancer_arn())
                .ok_or_else(lb_not_found)?
                .to_string();
            let mut ports = Vec::new();
            let mut marker = None;
            loop {
                let out = elb
                    .describe_listeners()
                    .load_balancer_arn(&lb_arn)
                    .set_marker(marker)
                    .send()
                    .await
                    .map_err(|e| {
                        classify(
                            "elbv2:DescribeListeners",
                            &format!("listeners of {load_balancer}"),
                            e,
                        )
                    })?;
                for l in out.listeners() {
                    if l.port() == Some(port) {
                        if let Some(a) = l.listener_arn() {
                            return Ok((a.to_string(), lb_arn));
                        }
                    }
                    ports.extend(l.port());
                }
                marker = out.next_marker().map(str::to_string);
                if marker.is_none() {
                    break;
                }
            }
            ports.sort_unstable();
            let available = if ports.is_empty() {
                "no ports".to_string()
            } else {
                ports
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Err(AwsError::ListenerPortNotFound {
                field,
                spec: spec.to_string(),
                load_balancer: load_balancer.to_string(),
                port,
                available,
            })
        }
    }
}

/// Check the rule exists and hangs off `listener_arn`.
pub(crate) async fn rule_on_listener(
    elb: &elbv2::Client,
    rule: &str,
    listener_arn: &str,
) -> Result<String, AwsError> {
    let not_found = || AwsError::RuleNotFound {
        rule: rule.to_string(),
        listener: listener_arn.to_string(),
    };
    let out = match elb.describe_rules().rule_arns(rule).send().await {
        Ok(out) => out,
        Err(e) => {
            return Err(
                match classify("elbv2:DescribeRules", &format!("rule {rule}"), e) {
                    PortError::NotFound { .. } => not_found(),
                    other => other.into(),
                },
            )
        }
    };
    let arn = out
        .rules()
        .first()
        .and_then(|r| r.rule_arn())
        .ok_or_else(not_found)?;
    if let Some(owner) = listener_of_rule(arn) {
        if owner != listener_arn {
            return Err(AwsError::RuleOnOtherListener {
                rule: rule.to_string(),
                rule_listener: owner,
                listener: listener_arn.to_string(),
            });
        }
    }
    Ok(arn.to_string())
}

/// A rule ARN is its listener's ARN with `listener-rule/` for `listener/` and one more
/// path segment (the rule id).
fn listener_of_rule(rule_arn: &str) -> Option<String> {
    let (head, _rule_id) = rule_arn.rsplit_once('/')?;
    head.contains(":listener-rule/")
        .then(|| head.replacen(":listener-rule/", ":listener/", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_specs_parse() {
        assert_eq!(
            parse_listener("f", "shop-alb:443").unwrap(),
            ListenerSpec::Port {
                load_balancer: "shop-alb",
                port: 443
            }
        );
        let arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/50dc/f2f7";
        assert_eq!(parse_listener("f", arn).unwrap(), ListenerSpec::Arn(arn));
        for bad in [
            "shop-alb",
            "shop-alb:",
            ":80",
            "shop-alb:http",
            "shop-alb:70000",
        ] {
            let err = parse_listener("traffic.listener", bad)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("traffic.listener") && err.contains(bad),
                "{err}"
            );
        }
    }

    #[test]
    fn rule_arn_names_its_listener() {
        let rule = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/shop/50dc/f2f7/9683";
        assert_eq!(
            listener_of_rule(rule).as_deref(),
            Some("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/50dc/f2f7")
        );
        assert_eq!(listener_of_rule("arn:aws:x:listener/app/shop/1/2"), None);
    }
}
