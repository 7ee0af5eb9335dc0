//! `[[companions]]`: services beside the blue/green pair (workers, schedulers) that take
//! the release's image. Checked like the rest of the plan (every problem with its span and
//! a hint) and resolved into dependency order, so the engine simply walks the list.

use super::names;
use super::raw::{RawCompanion, S};
use super::validate::Checker;
use super::Companion;

pub(super) fn resolve(
    c: &mut Checker,
    raw: Option<&S<Vec<S<RawCompanion>>>>,
    deploy_image: &str,
    colours: [&String; 2],
) -> Vec<Companion> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    let list: Vec<&RawCompanion> = raw.get_ref().iter().map(|r| r.get_ref()).collect();
    let mut out: Vec<Companion> = Vec::new();
    for r in &list {
        let name = c.check(&r.name, |s| names::ecs_name(s, "companion"));
        if out.iter().any(|o| o.name == name) {
            c.error_hint(
                r.name.span(),
                format!("companion `{name}` is defined twice"),
                "each [[companions]] entry needs its own `name`; remove or rename the repeat",
            );
        }
        let service = match &r.service {
            Some(s) => c.check(s, |s| names::ecs_name(s, "ECS service")),
            None => name.clone(),
        };
        let service_span = r.service.as_ref().unwrap_or(&r.name).span();
        if colours.contains(&&service) {
            c.error_hint(
                service_span.clone(),
                format!("companion `{name}` is the ECS service `{service}` of the blue/green pair"),
                "companions are the services beside the web pair; the pair itself is [blue] and [green]",
            );
        } else if out.iter().any(|o| o.service == service) {
            c.error_hint(
                service_span,
                format!("two companions update the same ECS service `{service}`"),
                "give each companion its own `service`",
            );
        }
        let container = c.check(&r.container, |s| names::ecs_name(s, "container"));
        let image = match &r.image {
            Some(i) => {
                let image = i.get_ref().clone();
                if !image.contains("{version}") {
                    c.error_hint(
                        i.span(),
                        format!("companion `{name}`: `image` = `{image}` has no `{{version}}` placeholder"),
                        "write e.g. \"registry.example.com/shop-worker:{version}\", or remove `image` to use deploy.image",
                    );
                } else if image.contains(char::is_whitespace) {
                    c.error(
                        i.span(),
                        format!("companion `{name}`: `image` contains whitespace"),
                    );
                }
                image
            }
            None => deploy_image.to_string(),
        };
        out.push(Companion {
            name,
            service,
            container,
            image,
            depends_on: r.depends_on.iter().map(|d| d.get_ref().clone()).collect(),
        });
    }
    // Unknown names and self-references, each where it is written.
    let names: Vec<&str> = out.iter().map(|o| o.name.as_str()).collect();
    let mut known_edges = true;
    for (r, me) in list.iter().zip(&out) {
        for d in &r.depends_on {
            let dep = d.get_ref().as_str();
            if dep == me.name {
                known_edges = false;
                c.error_hint(
                    d.span(),
                    format!("companion `{dep}` depends on itself"),
                    "remove it from its own `depends_on`",
                );
            } else if !names.contains(&dep) {
                known_edges = false;
                let hint = match super::diag::suggest(dep, &names) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if names.len() > 1 => format!(
                        "`depends_on` names other [[companions]]: {}",
                        names.iter().filter(|n| **n != me.name).copied().collect::<Vec<_>>().join(", ")
                    ),
                    None => "`depends_on` names other [[companions]] entries; add that companion or remove the name".into(),
                };
                c.error_hint(
                    d.span(),
                    format!(
                        "companion `{}` depends on `{dep}`, which is not a companion",
                        me.name
                    ),
                    hint,
                );
            }
        }
    }
    if !known_edges {
        return out;
    }
    match order(&out) {
        Ok(sorted) => sorted,
        Err(cycle) => {
            let first = list
                .iter()
                .zip(&out)
                .find(|(_, o)| o.name == cycle[0])
                .map(|(r, _)| r.name.span())
                .unwrap_or_else(|| raw.span());
            c.error_hint(
                first,
                format!("the companions' `depends_on` form a cycle: {}", cycle.join(" → ")),
                "a companion moves only after everything it depends on; remove one of these dependencies",
            );
            out
        }
    }
}

/// Dependency order, keeping the file's order among companions free to go (so a plan
/// without `depends_on` moves them as written). Err: the names of one cycle, closed
/// (`a → b → a`).
fn order(list: &[Companion]) -> Result<Vec<Companion>, Vec<String>> {
    let mut placed: Vec<Companion> = Vec::new();
    let mut left: Vec<&Companion> = list.iter().collect();
    while !left.is_empty() {
        let ready = left.iter().position(|c| {
            c.depends_on
                .iter()
                .all(|d| placed.iter().any(|p| &p.name == d))
        });
        match ready {
            Some(i) => placed.push(left.remove(i).clone()),
            None => return Err(cycle(&left)),
        }
    }
    Ok(placed)
}

/// One cycle among `left` (every one of them waits for another one of them).
fn cycle(left: &[&Companion]) -> Vec<String> {
    let waits_for = |name: &str| -> &str {
        let c = left.iter().find(|c| c.name == name).expect("in left");
        c.depends_on
            .iter()
            .find(|d| left.iter().any(|l| &l.name == *d))
            .map(String::as_str)
            .expect("blocked by one of left")
    };
    let mut path: Vec<&str> = vec![left[0].name.as_str()];
    loop {
        let next = waits_for(path[path.len() - 1]);
        if let Some(i) = path.iter().position(|p| *p == next) {
            let mut cyc: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            cyc.push(next.to_string());
            return cyc;
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(name: &str, deps: &[&str]) -> Companion {
        Companion {
            name: name.into(),
            service: name.into(),
            container: "app".into(),
            image: "x:{version}".into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn names(v: &[Companion]) -> Vec<&str> {
        v.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn order_puts_dependencies_first_and_keeps_file_order_otherwise() {
        let list = [
            comp("scheduler", &["worker"]),
            comp("mailer", &[]),
            comp("worker", &[]),
        ];
        assert_eq!(
            names(&order(&list).unwrap()),
            ["mailer", "worker", "scheduler"]
        );
        let free = [comp("b", &[]), comp("a", &[])];
        assert_eq!(names(&order(&free).unwrap()), ["b", "a"]);
    }

    #[test]
    fn a_cycle_is_named_closed() {
        let list = [
            comp("free", &[]),
            comp("a", &["b"]),
            comp("b", &["c"]),
            comp("c", &["a"]),
        ];
        assert_eq!(order(&list).unwrap_err(), ["a", "b", "c", "a"]);
    }
}

#[cfg(test)]
mod plan_tests {
    use crate::plan::{parse, CompanionsMove};
    use std::path::Path;

    const BASE: &str = include_str!("../../../../examples/rehearsal.toml");

    fn with(deploy_extra: &str, companions: &str) -> Result<crate::plan::Plan, String> {
        let text = BASE.replace(
            "timeout = \"2m\"                                       # green must be running",
            &format!("{deploy_extra}\ntimeout = \"2m\" # green must be running"),
        ) + companions;
        parse(&text, Path::new("plan.toml")).map_err(|e| e.message)
    }

    #[test]
    fn the_example_resolves_in_dependency_order() {
        let text = include_str!("../../../../examples/multi-service.toml");
        let plan = parse(text, Path::new("examples/multi-service.toml")).unwrap();
        let names: Vec<_> = plan.companions.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["worker", "scheduler"]);
        assert_eq!(plan.companions[0].service, "shop-worker");
        assert_eq!(plan.companions[0].image, plan.deploy.image);
        assert_eq!(plan.companions_move, CompanionsMove::AfterFirstGate);
        let plain = parse(BASE, Path::new("r.toml")).unwrap();
        assert!(plain.companions.is_empty());
    }

    #[test]
    fn problems_are_reported_where_they_are_written() {
        let e = with(
            "companions_move = \"after_gate\"",
            "\n[[companions]]\nname = \"worker\"\ncontainer = \"w\"\ndepends_on = [\"wroker\"]\n\
             \n[[companions]]\nname = \"worker\"\ncontainer = \"w\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("`deploy.companions_move` = `after_gate` is not a known value"),
            "{e}"
        );
        assert!(e.contains("did you mean `after_first_gate`?"), "{e}");
        assert!(e.contains("companion `worker` is defined twice"), "{e}");
        assert!(
            e.contains("depends on `wroker`, which is not a companion"),
            "{e}"
        );
        assert!(e.contains("did you mean `worker`?"), "{e}");
        assert!(e.contains("plan.toml:"), "{e}");
    }

    #[test]
    fn a_cycle_and_an_unknown_key_are_refused() {
        let e = with(
            "",
            "\n[[companions]]\nname = \"a\"\ncontainer = \"w\"\ndepends_on = [\"b\"]\n\
             \n[[companions]]\nname = \"b\"\ncontainer = \"w\"\ndepends_on = [\"a\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("form a cycle: a → b → a"), "{e}");
        let e = with(
            "",
            "\n[[companions]]\nname = \"a\"\ncontainer = \"w\"\ncomand = [\"x\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("comand"), "{e}");
        let e = with(
            "",
            "\n[[companions]]\nname = \"a\"\nservice = \"shop-blue\"\ncontainer = \"w\"\n",
        )
        .unwrap_err();
        assert!(e.contains("of the blue/green pair"), "{e}");
    }
}
