//! Diagnostics: what is wrong, where (`file:line:col`), the offending line with a caret
//! under it, and a hint. Also turns the TOML parser's errors into the same shape, with
//! "did you mean" suggestions for misspelt keys and values.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;

/// One problem in a plan file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diag {
    /// Byte range in the source; `None` when the problem has no place (e.g. an empty file).
    pub span: Option<Range<usize>>,
    pub message: String,
    pub hint: Option<String>,
}

impl Diag {
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        Diag {
            span: Some(span),
            message: message.into(),
            hint: None,
        }
    }

    pub fn nowhere(message: impl Into<String>) -> Self {
        Diag {
            span: None,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

/// 1-based line and column (in characters) of byte `offset`, clamped into `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(src, offset);
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = src[line_start..offset].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(src: &str, offset: usize) -> usize {
    let mut i = offset.min(src.len());
    while !src.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Render every diagnostic, in source order, plus a count when there is more than one.
pub fn render(path: &Path, src: &str, diags: &[Diag]) -> String {
    let file = path.display();
    let mut sorted: Vec<&Diag> = diags.iter().collect();
    sorted.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
    let mut out = String::new();
    for (i, d) in sorted.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_one(&mut out, &file.to_string(), src, d);
    }
    if sorted.len() > 1 {
        let _ = writeln!(
            out,
            "\n{file}: {} problems; fix them all, then run `glidepath plan validate {file}` again",
            sorted.len()
        );
    }
    while out.ends_with('\n') {
        out.pop();
    }
    out
}

fn render_one(out: &mut String, file: &str, src: &str, d: &Diag) {
    let Some(span) = &d.span else {
        let _ = writeln!(out, "{file}: error: {}", d.message);
        if let Some(h) = &d.hint {
            let _ = writeln!(out, "  = hint: {h}");
        }
        return;
    };
    let start = floor_char_boundary(src, span.start);
    let (line, col) = line_col(src, start);
    let _ = writeln!(out, "{file}:{line}:{col}: error: {}", d.message);
    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
    let text = src[line_start..line_end].trim_end_matches('\r');
    let gutter = " ".repeat(line.to_string().len());
    // Carets cover the span on its first line; keep tabs so they line up under the text.
    let end = floor_char_boundary(src, span.end.max(start)).min(line_start + text.len());
    let pad: String = src[line_start..start]
        .chars()
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let width = src[start..end.max(start)].chars().count().max(1);
    let _ = writeln!(out, "{gutter} |");
    let _ = writeln!(out, "{line} | {text}");
    let _ = writeln!(out, "{gutter} | {pad}{}", "^".repeat(width));
    if let Some(h) = &d.hint {
        let _ = writeln!(out, "{gutter} = hint: {h}");
    }
}

/// The candidate a misspelt `word` most likely meant, if any is close enough.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let mut best: Option<(&'a str, f64)> = None;
    for &c in candidates {
        let distance = strsim::damerau_levenshtein(&lower, c);
        let close_edit = distance <= (c.len() / 3).max(1);
        let similarity = strsim::jaro_winkler(&lower, c);
        // `poll` for `poll_interval`, `bake_time` for `bake`: one contains the other.
        let contains = lower.len() >= 3 && (c.contains(&lower) || lower.contains(c));
        if !(close_edit || similarity >= 0.88 || contains) {
            continue;
        }
        let score = similarity - distance as f64 * 0.01;
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}

/// The table a byte offset sits in, as written in its header (`[state]`, `[[steps]]`), or
/// `None` at the top level. Good enough for messages; dotted keys are not resolved.
pub fn table_at(src: &str, offset: usize) -> Option<String> {
    let offset = floor_char_boundary(src, offset);
    let line_end = src[offset..].find('\n').map_or(src.len(), |i| offset + i);
    src[..line_end].lines().rev().find_map(|l| {
        let t = l.trim();
        if t.starts_with('[') {
            // Cut a trailing comment after the header.
            let end = t.find(']').map(|i| {
                if t[i + 1..].starts_with(']') {
                    i + 2
                } else {
                    i + 1
                }
            });
            Some(t[..end.unwrap_or(t.len())].to_string())
        } else {
            None
        }
    })
}

/// Words between backticks in a serde/toml message, in order.
fn ticked(msg: &str) -> Vec<&str> {
    msg.split('`').skip(1).step_by(2).collect()
}

fn place(table: &Option<String>) -> String {
    match table {
        Some(t) => format!("in {t}"),
        None => "at the top level".into(),
    }
}

/// A TOML syntax or schema error as a diagnostic with a helpful message and hint.
pub fn from_toml(src: &str, err: &toml::de::Error, top_level_keys: &[&str]) -> Diag {
    let raw = err.message().trim();
    let span = err.span();
    let table = span.as_ref().and_then(|s| table_at(src, s.start));
    let mut diag = Diag {
        span: span.clone(),
        message: raw.lines().collect::<Vec<_>>().join("; "),
        hint: None,
    };
    if let Some(rest) = raw.strip_prefix("unknown field ") {
        let words = ticked(rest);
        let Some((key, expected)) = words.split_first() else {
            return diag;
        };
        diag.message = format!("unknown key `{key}` {}", place(&table));
        diag.hint = if table.is_some() && top_level_keys.contains(key) {
            Some(format!(
                "`{key}` is a top-level key: move it above the first [table] header"
            ))
        } else if let Some(s) = suggest(key, expected) {
            Some(format!("did you mean `{s}`?"))
        } else if expected.is_empty() {
            None
        } else {
            Some(format!("keys allowed here: {}", expected.join(", ")))
        };
    } else if let Some(rest) = raw.strip_prefix("unknown variant ") {
        let words = ticked(rest);
        if let Some((value, expected)) = words.split_first() {
            diag.message = format!("unknown value `{value}`");
            diag.hint = suggest(value, expected)
                .map(|s| format!("did you mean `{s}`?"))
                .or_else(|| Some(format!("use one of: {}", expected.join(", "))));
        }
    } else if let Some(rest) = raw.strip_prefix("missing field ") {
        if let Some(key) = ticked(rest).first() {
            diag.message = format!("missing key `{key}` {}", place(&table));
            diag.hint = Some(format!(
                "add `{key} = ...`; docs/plan.md describes every key"
            ));
        }
    } else if let Some(rest) = raw.strip_prefix("invalid type: ") {
        let rest = plain_types(rest);
        diag.message = format!("wrong type: {rest}");
        if rest.starts_with("string") && rest.ends_with("expected an integer") {
            diag.hint = Some("write the number without quotes".into());
        } else if rest.contains("expected a sequence") && rest.starts_with("map") {
            diag.hint = Some(
                "write each entry as its own [[double-bracket]] table, or use a list `[...]`"
                    .into(),
            );
        } else if rest.ends_with("expected a string") {
            diag.hint = Some("put the value in double quotes".into());
        }
    } else if raw.starts_with("duplicate key") {
        diag.hint = Some("each key may appear once per table; delete one of them".into());
    }
    // A missing top-level key has no place in the file: the parser blames the whole document.
    if diag.message.starts_with("missing key") && table.is_none() {
        diag.span = None;
    }
    diag
}

/// serde's Rust type names in the words a plan author uses.
fn plain_types(msg: &str) -> String {
    let mut out = msg.to_string();
    for (rust, plain) in [
        ("expected i64", "expected an integer"),
        ("expected u64", "expected an integer"),
        ("expected u8", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
    ] {
        if let Some(head) = out.strip_suffix(rust) {
            out = format!("{head}{plain}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_and_nothing_for_strangers() {
        let keys = ["weight", "bake", "gate"];
        assert_eq!(suggest("bak", &keys), Some("bake"));
        assert_eq!(suggest("bkae", &keys), Some("bake"));
        assert_eq!(suggest("Weight", &keys), Some("weight"));
        assert_eq!(suggest("wieght", &keys), Some("weight"));
        assert_eq!(suggest("bake_time", &keys), Some("bake"));
        assert_eq!(suggest("colour", &keys), None);
        assert_eq!(suggest("x", &keys), None);
        let gates = ["poll_interval", "max_blind", "min_requests", "alarms"];
        assert_eq!(suggest("poll", &gates), Some("poll_interval"));
        assert_eq!(suggest("alarm", &gates), Some("alarms"));
        assert_eq!(suggest("manul", &["auto", "manual"]), Some("manual"));
        assert_eq!(suggest("", &gates), None);
    }

    #[test]
    fn line_and_column_count_characters() {
        let src = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        let eq = src.find('=').unwrap();
        assert_eq!(line_col(src, eq), (1, 3));
        let second_eq = src.rfind('=').unwrap();
        assert_eq!(line_col(src, second_eq), (2, 4));
        assert_eq!(line_col(src, 10_000), (3, 1));
        // Inside a multi-byte char: clamps back, never panics.
        assert_eq!(line_col(src, 8), (2, 2));
    }

    #[test]
    fn renders_position_line_caret_and_hint() {
        let src = "app = \"shop\"\n[[steps]]\nbak = \"3s\"\n";
        let start = src.find("bak").unwrap();
        let d = Diag::at(start..start + 3, "unknown key `bak` in [[steps]]")
            .hint("did you mean `bake`?");
        let text = render(Path::new("p.toml"), src, &[d]);
        assert_eq!(
            text,
            "p.toml:3:1: error: unknown key `bak` in [[steps]]\n  |\n3 | bak = \"3s\"\n  | ^^^\n  = hint: did you mean `bake`?"
        );
    }

    #[test]
    fn several_problems_are_sorted_and_counted() {
        let src = "a = 1\nb = 2\n";
        let text = render(
            Path::new("p.toml"),
            src,
            &[
                Diag::at(6..7, "second"),
                Diag::at(0..1, "first"),
                Diag::nowhere("nowhere"),
            ],
        );
        let first = text.find("first").unwrap();
        let second = text.find("second").unwrap();
        assert!(first < second, "{text}");
        assert!(text.contains("p.toml:2:1: error: second"), "{text}");
        assert!(text.contains("p.toml: error: nowhere"), "{text}");
        assert!(text.contains("3 problems"), "{text}");
    }

    #[test]
    fn finds_the_enclosing_table() {
        let src = "app = 1\n[state] # where\nbucket = 1\n[[steps]]\nweight = 1\n";
        assert_eq!(table_at(src, 2), None);
        assert_eq!(
            table_at(src, src.find("bucket").unwrap()).as_deref(),
            Some("[state]")
        );
        assert_eq!(
            table_at(src, src.find("[state]").unwrap()).as_deref(),
            Some("[state]")
        );
        assert_eq!(
            table_at(src, src.find("weight").unwrap()).as_deref(),
            Some("[[steps]]")
        );
    }
}
