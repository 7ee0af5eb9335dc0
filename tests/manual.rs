//! `glidepath completions SHELL` and `glidepath man` as a user runs them: the real binary,
//! checked against the subcommands the clap definition has (never a hard-coded list).

use clap::CommandFactory;
use std::process::{Command, Output};

fn glidepath(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glidepath"))
        .args(args)
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run glidepath")
}

/// Every subcommand path, `["plan", "validate"]` style, from the clap definition.
fn subcommands() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&glidepath::cli::Cli::command(), &[], &mut out);
    out
}

#[test]
fn the_clap_definition_has_the_commands_these_tests_rely_on() {
    let subs = subcommands();
    // Guards the derivation itself: an empty walk would make the tests below pass vacuously.
    for expected in [
        &["release"][..],
        &["plan", "validate"],
        &["completions"],
        &["man"],
    ] {
        assert!(
            subs.iter().any(|s| s == expected),
            "{expected:?} not in {subs:?}"
        );
    }
}

#[test]
fn completions_for_each_shell_mention_every_subcommand() {
    let subs = subcommands();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = glidepath(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.len() > 500, "{shell}: too short: {script}");
        for path in &subs {
            let name = path.last().unwrap();
            assert!(
                script.contains(name.as_str()),
                "{shell} completion does not mention `{}`",
                path.join(" ")
            );
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error_naming_the_choices() {
    let out = glidepath(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
}

#[test]
fn the_man_page_mentions_every_top_level_subcommand() {
    let out = glidepath(&["man"]);
    assert!(out.status.success(), "{out:?}");
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH glidepath"),
        "{page}"
    );
    for path in subcommands().iter().filter(|p| p.len() == 1) {
        // roff escapes '-' as '\-'.
        let name = path[0].replace('-', "\\-");
        assert!(
            page.contains(&name),
            "the man page does not mention `{}`",
            path[0]
        );
    }
}

#[test]
fn man_dir_writes_one_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = glidepath(&["man", "--dir", &dir.path().display().to_string()]);
    assert!(out.status.success(), "{out:?}");
    assert!(dir.path().join("glidepath.1").is_file());
    for path in subcommands() {
        let page = dir.path().join(format!("glidepath-{}.1", path.join("-")));
        let text =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(text.contains(".TH"), "{}: {text}", page.display());
    }

    let missing = dir.path().join("nope");
    let out = glidepath(&["man", "--dir", &missing.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dir"));
}
