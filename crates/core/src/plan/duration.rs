//! Durations as plans write them: `"90s"`, `"5m"`, `"1h30m"`, `"250ms"`, `"0s"`.
//!
//! A plain number is refused on purpose: `bake = 5` could mean seconds or minutes, and a
//! release that bakes for 5 s instead of 5 min is exactly the mistake a plan must not allow.

use std::time::Duration;

/// Why a duration string was refused (rendered as the diagnostic's message and hint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    pub message: String,
    pub hint: String,
}

const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];
const EXAMPLES: &str = "write it like \"90s\", \"5m\" or \"1h30m\"";

/// Parse `"1h30m"`-style text. Units must appear largest first, each at most once.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let bad = |what: &str| DurationError {
        message: format!("`{text}` is not a duration: {what}"),
        hint: EXAMPLES.to_string(),
    };
    if text.is_empty() {
        return Err(DurationError {
            message: "empty duration".into(),
            hint: EXAMPLES.into(),
        });
    }
    if text.contains(char::is_whitespace) {
        return Err(bad(
            "durations have no spaces and use the units h, m, s, ms",
        ));
    }
    if text.chars().all(|c| c.is_ascii_digit()) {
        return Err(DurationError {
            message: format!("duration `{text}` has no unit"),
            hint: format!("write \"{text}s\" for seconds or \"{text}m\" for minutes"),
        });
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    // Index into UNITS of the last unit seen: the next one must be strictly smaller.
    let mut last: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| bad("the number is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        let Some(idx) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(if unit.is_empty() {
                bad("a number without a unit")
            } else {
                bad(&format!("unknown unit `{unit}` (use h, m, s or ms)"))
            });
        };
        if last.is_some_and(|l| idx <= l) {
            return Err(bad("units must go from largest to smallest, each once"));
        }
        last = Some(idx);
        total_ms = value
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(|| bad("too long"))?;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_millis(total_ms))
}

/// The shortest plan-style text for `d` (whole milliseconds): `1h30m`, `90s` → `1m30s`, `0s`.
pub fn format(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        let size = u128::from(size);
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse("90s").unwrap(), secs(90));
        assert_eq!(parse("5m").unwrap(), secs(300));
        assert_eq!(parse("1h30m").unwrap(), secs(5400));
        assert_eq!(parse("1h30m15s").unwrap(), secs(5415));
        assert_eq!(parse("0s").unwrap(), secs(0));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1s500ms").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn refuses_what_a_tired_operator_might_write() {
        for text in [
            "",
            "5",
            "5 minutes",
            "5min",
            "m5",
            "1.5s",
            "5s5s",
            "5s1m",
            " 5s",
            "5s ",
            "-5s",
            "5d",
            "s",
        ] {
            assert!(parse(text).is_err(), "{text:?} should be refused");
        }
        let e = parse("5").unwrap_err();
        assert!(e.hint.contains("\"5s\""), "{e:?}");
        let e = parse("5 minutes").unwrap_err();
        assert!(e.message.contains("`5 minutes`"), "{e:?}");
        assert!(e.hint.contains("\"5m\""), "{e:?}");
        let e = parse("5d").unwrap_err();
        assert!(e.message.contains("unknown unit `d`"), "{e:?}");
    }

    #[test]
    fn huge_numbers_are_errors_not_overflows() {
        assert!(parse("99999999999999999999999s").is_err());
        assert!(parse("18446744073709551615h").is_err());
    }

    #[test]
    fn format_round_trips() {
        for text in ["0s", "90s", "5m", "1h30m", "250ms", "2h", "1h1m1s1ms"] {
            let d = parse(text).unwrap();
            assert_eq!(parse(&format(d)).unwrap(), d, "{text}");
        }
        assert_eq!(format(secs(90)), "1m30s");
        assert_eq!(format(secs(5400)), "1h30m");
        assert_eq!(format(secs(0)), "0s");
    }
}
