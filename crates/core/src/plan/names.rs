//! Shape checks for the names and ARNs a plan refers to. They catch what AWS would refuse
//! (or worse, silently accept against the wrong resource) before anything runs.

/// What is wrong with a value, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    fn new(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

pub type Check = Result<(), Problem>;

/// `arn:partition:service:region:account:resource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

const PARTITIONS: &[&str] = &["aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b"];

pub fn parse_arn(text: &str) -> Result<Arn<'_>, Problem> {
    let shape = "an ARN looks like arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE";
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    let [head, partition, service, region, account, resource] = parts[..] else {
        return Err(Problem::new(format!("`{text}` is not a well-formed ARN")).hint(shape));
    };
    if head != "arn" {
        return Err(Problem::new(format!("`{text}` is not a well-formed ARN")).hint(shape));
    }
    if !PARTITIONS.contains(&partition) {
        return Err(Problem::new(format!(
            "ARN `{text}` has an unknown partition `{partition}`"
        ))
        .hint("the partition is usually `aws`"));
    }
    if service.is_empty() || resource.is_empty() {
        return Err(
            Problem::new(format!("ARN `{text}` has an empty service or resource")).hint(shape),
        );
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::new(format!(
            "ARN `{text}` has account `{account}`; an AWS account id is 12 digits"
        )));
    }
    if let Err(p) = region_name(region) {
        return Err(Problem::new(format!("ARN `{text}`: {}", p.message)));
    }
    Ok(Arn {
        partition,
        service,
        region,
        account,
        resource,
    })
}

/// What kind of resource an ARN names, for "this is X, but Y is needed" messages.
fn kind(arn: &Arn) -> String {
    let first = arn.resource.split(['/', ':']).next().unwrap_or("");
    match (arn.service, first) {
        ("elasticloadbalancing", "targetgroup") => "a target group".into(),
        ("elasticloadbalancing", "listener") => "a listener".into(),
        ("elasticloadbalancing", "listener-rule") => "a listener rule".into(),
        ("elasticloadbalancing", "loadbalancer") => "a load balancer".into(),
        (service, "") => format!("a {service} resource"),
        (service, first) => format!("a {service} `{first}`"),
    }
}

fn id_segment(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The resource path after `prefix/`, split on `/`, if the ARN is an ELBv2 `prefix`.
fn elb_resource<'a>(
    text: &'a str,
    prefix: &str,
    wanted: &str,
    example: &str,
) -> Result<(Arn<'a>, Vec<&'a str>), Problem> {
    let arn = parse_arn(text)?;
    let is_it =
        arn.service == "elasticloadbalancing" && arn.resource.split('/').next() == Some(prefix);
    if !is_it {
        return Err(
            Problem::new(format!("`{text}` is {}, not {wanted}", kind(&arn)))
                .hint(format!("{wanted} ARN looks like {example}")),
        );
    }
    let rest: Vec<&str> = arn.resource.split('/').skip(1).collect();
    Ok((arn, rest))
}

const TG_EXAMPLE: &str =
    "arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/0123456789abcdef";
const LISTENER_EXAMPLE: &str =
    "arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener/app/LB-NAME/LB-ID/LISTENER-ID";
const RULE_EXAMPLE: &str =
    "arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener-rule/app/LB-NAME/LB-ID/LISTENER-ID/RULE-ID";

/// An SNS topic ARN (`arn:aws:sns:REGION:ACCOUNT:NAME`); returns its region.
pub fn sns_topic_arn(text: &str) -> Result<String, Problem> {
    const EXAMPLE: &str = "arn:aws:sns:REGION:ACCOUNT:TOPIC-NAME";
    let arn = parse_arn(text).map_err(|p| {
        let hint = format!("an SNS topic ARN looks like {EXAMPLE}");
        Problem {
            hint: Some(hint),
            ..p
        }
    })?;
    if arn.service != "sns" {
        return Err(
            Problem::new(format!("`{text}` is {}, not an SNS topic", kind(&arn)))
                .hint(format!("an SNS topic ARN looks like {EXAMPLE}")),
        );
    }
    let name = arn.resource.strip_suffix(".fifo").unwrap_or(arn.resource);
    if name.is_empty()
        || arn.resource.len() > 256
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Problem::new(format!(
            "SNS topic ARN `{text}` has an invalid topic name `{}`",
            arn.resource
        ))
        .hint("topic names are 1 to 256 letters, digits, `-` and `_` (FIFO topics end in .fifo)"));
    }
    Ok(arn.region.to_string())
}

/// A target group ARN; returns its region.
pub fn target_group_arn(text: &str) -> Result<&str, Problem> {
    let (arn, rest) = elb_resource(text, "targetgroup", "a target group", TG_EXAMPLE)?;
    match rest[..] {
        [name, id] if target_group_name(name).is_ok() && id_segment(id) => Ok(arn.region),
        _ => Err(
            Problem::new(format!("target group ARN `{text}` is malformed"))
                .hint(format!("it looks like {TG_EXAMPLE}")),
        ),
    }
}

/// Load balancer name and listener id path (`app/NAME/LB-ID/LISTENER-ID`) of a listener ARN.
#[derive(Debug)]
pub struct ListenerArn<'a> {
    pub region: &'a str,
    pub load_balancer: &'a str,
    /// `app/NAME/LB-ID/LISTENER-ID`, the part a rule ARN repeats.
    pub path: String,
}

fn alb_only(text: &str, lb_type: &str) -> Problem {
    Problem::new(format!(
        "`{text}` belongs to a `{lb_type}` load balancer; only Application Load Balancers (`app/`) can split traffic by weight"
    ))
    .hint("use the HTTP/HTTPS listener of the app's Application Load Balancer")
}

pub fn listener_arn(text: &str) -> Result<ListenerArn<'_>, Problem> {
    let (arn, rest) = elb_resource(text, "listener", "a listener", LISTENER_EXAMPLE)?;
    match rest[..] {
        ["app", lb, lb_id, id]
            if load_balancer_name(lb).is_ok() && id_segment(lb_id) && id_segment(id) =>
        {
            Ok(ListenerArn {
                region: arn.region,
                load_balancer: lb,
                path: rest.join("/"),
            })
        }
        [lb_type, ..] if lb_type == "net" || lb_type == "gwy" => Err(alb_only(text, lb_type)),
        _ => Err(Problem::new(format!("listener ARN `{text}` is malformed"))
            .hint(format!("it looks like {LISTENER_EXAMPLE}"))),
    }
}

/// A listener rule ARN; returns its region and the listener path it belongs to.
pub fn rule_arn(text: &str) -> Result<(&str, String), Problem> {
    let (arn, rest) = elb_resource(text, "listener-rule", "a listener rule", RULE_EXAMPLE)?;
    match rest[..] {
        ["app", lb, lb_id, listener_id, rule_id]
            if load_balancer_name(lb).is_ok()
                && id_segment(lb_id)
                && id_segment(listener_id)
                && id_segment(rule_id) =>
        {
            Ok((arn.region, rest[..4].join("/")))
        }
        [lb_type, ..] if lb_type == "net" || lb_type == "gwy" => Err(alb_only(text, lb_type)),
        _ => Err(
            Problem::new(format!("listener rule ARN `{text}` is malformed"))
                .hint(format!("it looks like {RULE_EXAMPLE}")),
        ),
    }
}

/// `<load-balancer-name>:<port>`; returns the load balancer name.
pub fn listener_by_name(text: &str) -> Result<&str, Problem> {
    let form = || {
        Problem::new(format!(
            "`{text}` is neither a listener ARN nor `<load-balancer-name>:<port>`"
        ))
        .hint("write e.g. \"shop-alb:443\", or the listener's full ARN")
    };
    let (lb, port) = text.rsplit_once(':').ok_or_else(form)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    if !port_ok {
        return Err(Problem::new(format!(
            "`{text}`: port `{port}` is not a port number (1-65535)"
        )));
    }
    load_balancer_name(lb).map_err(|_| form())?;
    Ok(lb)
}

/// Load balancer and target group names: 1-32 letters, digits and hyphens, no hyphen at
/// either end.
fn elb_name(text: &str, what: &str) -> Check {
    let ok = (1..=32).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Problem::new(format!(
            "`{text}` is not a valid {what} name: 1-32 letters, digits and hyphens, not starting or ending with a hyphen"
        )))
    }
}

pub fn load_balancer_name(text: &str) -> Check {
    elb_name(text, "load balancer")
}

pub fn target_group_name(text: &str) -> Check {
    elb_name(text, "target group")
}

/// ECS cluster, service and container names: 1-255 letters, digits, hyphens, underscores.
pub fn ecs_name(text: &str, what: &str) -> Check {
    let ok = (1..=255).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Problem::new(format!(
            "`{text}` is not a valid {what} name: 1-255 letters, digits, hyphens and underscores"
        )))
    }
}

/// RDS instance or cluster identifier: 1-63 letters, digits, hyphens; starts with a letter;
/// no `--`; does not end with a hyphen.
pub fn db_identifier(text: &str) -> Check {
    let ok = (1..=63).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !text.contains("--")
        && !text.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Problem::new(format!(
            "`{text}` is not a valid RDS identifier: 1-63 letters, digits and hyphens, starting with a letter, no `--`, not ending with a hyphen"
        )))
    }
}

/// S3 general purpose bucket naming rules.
pub fn bucket_name(text: &str) -> Check {
    let bad = |why: &str| {
        Err(Problem::new(format!("`{text}` is not a valid S3 bucket name: {why}"))
            .hint("bucket names are 3-63 lowercase letters, digits, dots and hyphens, e.g. \"shop-release-state\""))
    };
    if !(3..=63).contains(&text.len()) {
        return bad("it must be 3-63 characters long");
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return bad("only lowercase letters, digits, dots and hyphens are allowed");
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge(text.chars().next()) || !edge(text.chars().last()) {
        return bad("it must start and end with a letter or digit");
    }
    if text.contains("..") || text.contains(".-") || text.contains("-.") {
        return bad("dots may not be doubled or next to a hyphen");
    }
    if text.split('.').count() == 4 && text.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return bad("it must not look like an IP address");
    }
    if text.starts_with("xn--")
        || text.starts_with("sthree-")
        || text.ends_with("-s3alias")
        || text.ends_with("--ol-s3")
    {
        return bad("that prefix or suffix is reserved by S3");
    }
    Ok(())
}

/// AWS region names such as `eu-west-1`, `us-gov-west-1`, `ap-southeast-4`.
pub fn region_name(text: &str) -> Check {
    let parts: Vec<&str> = text.split('-').collect();
    let ok = parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok_and(|n| n > 0);
    if ok {
        Ok(())
    } else {
        Err(Problem::new(format!("`{text}` is not an AWS region name"))
            .hint("regions look like \"eu-west-1\" or \"us-east-1\""))
    }
}

/// App and environment names end up in S3 keys, snapshot ids and task tags: keep them plain.
pub fn simple_name(text: &str, what: &str) -> Check {
    let ok = (1..=40).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Problem::new(format!(
            "`{text}` is not a valid {what}: 1-40 lowercase letters, digits and hyphens"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TG: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/shop-blue/6d0ecf831eec9f09";
    const LISTENER: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/shop-alb/50dc6c495c0c9188/f2f7dc8efc522ab2";
    const RULE: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener-rule/app/shop-alb/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee";

    #[test]
    fn elb_arns_of_the_right_type_pass() {
        assert_eq!(target_group_arn(TG).unwrap(), "eu-west-1");
        let l = listener_arn(LISTENER).unwrap();
        assert_eq!((l.region, l.load_balancer), ("eu-west-1", "shop-alb"));
        let (region, listener) = rule_arn(RULE).unwrap();
        assert_eq!(region, "eu-west-1");
        assert_eq!(listener, l.path);
    }

    #[test]
    fn elb_arns_of_the_wrong_type_say_what_they_are() {
        let e = target_group_arn(LISTENER).unwrap_err();
        assert!(
            e.message.contains("is a listener, not a target group"),
            "{e:?}"
        );
        let e = listener_arn(TG).unwrap_err();
        assert!(
            e.message.contains("is a target group, not a listener"),
            "{e:?}"
        );
        let e = rule_arn(LISTENER).unwrap_err();
        assert!(e.message.contains("not a listener rule"), "{e:?}");
        let e =
            listener_arn("arn:aws:ecs:eu-west-1:123456789012:service/shop/shop-blue").unwrap_err();
        assert!(e.message.contains("a ecs `service`"), "{e:?}");
        let nlb = LISTENER.replace("/app/", "/net/");
        let e = listener_arn(&nlb).unwrap_err();
        assert!(e.message.contains("Application Load Balancers"), "{e:?}");
    }

    #[test]
    fn malformed_arns_are_refused() {
        for bad in [
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012",
            "arn:aws:elasticloadbalancing:eu-west-1:12345:targetgroup/a/b",
            "arn:aws:elasticloadbalancing:europe:123456789012:targetgroup/a/b",
            "arn:awz:elasticloadbalancing:eu-west-1:123456789012:targetgroup/a/b",
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/a",
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/-a/b1",
            "nra:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/a/b",
        ] {
            assert!(target_group_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listener_names_need_a_port() {
        assert_eq!(listener_by_name("shop:80").unwrap(), "shop");
        assert!(listener_by_name("shop").is_err());
        assert!(listener_by_name("shop:0").is_err());
        assert!(listener_by_name("shop:http").is_err());
        assert!(listener_by_name("sh op:80").is_err());
    }

    #[test]
    fn bucket_rules() {
        for ok in ["shop-assets", "abc", "a.b.c", "shop-glidepath-state"] {
            assert!(bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Shop",
            "shop_assets",
            "-shop",
            "shop-",
            "a..b",
            "192.168.0.1",
            "xn--shop",
            "a".repeat(64).as_str(),
        ] {
            assert!(bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regions_and_identifiers() {
        for ok in ["eu-west-1", "us-east-1", "us-gov-west-1", "ap-southeast-4"] {
            assert!(region_name(ok).is_ok(), "{ok}");
        }
        for bad in ["eu-west", "EU-WEST-1", "euwest1", "eu-west-1a", ""] {
            assert!(region_name(bad).is_err(), "{bad}");
        }
        assert!(db_identifier("shop-db").is_ok());
        assert!(db_identifier("1shop").is_err());
        assert!(db_identifier("shop--db").is_err());
        assert!(db_identifier("shop-").is_err());
        assert!(ecs_name("shop_web-1", "service").is_ok());
        assert!(ecs_name("shop web", "service").is_err());
        assert!(simple_name("shop", "app").is_ok());
        assert!(simple_name("Shop", "app").is_err());
    }
}
