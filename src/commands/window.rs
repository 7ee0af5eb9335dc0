//! `history --since WHEN --limit N`: which entries of the release index or the operations
//! log to show. Parsing gives the flag's name and the expected form; filtering is pure.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// `--since`: an age (`7d`, `12h`, `1d12h`, `90m`) or an RFC 3339 time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Ago(Duration),
    At(DateTime<Utc>),
}

impl Since {
    /// The earliest time shown, counted back from `now` for an age.
    pub fn cutoff(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Since::At(t) => t,
            Since::Ago(d) => chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }
}

const SINCE_FORM: &str =
    "expected an age such as 7d, 12h, 1d12h or 30m, or an RFC 3339 time such as 2026-11-01T00:00:00Z";

/// clap's value parser for `--since` (its error lands after clap's "invalid value … for '--since'").
pub fn parse_since(text: &str) -> Result<Since, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Since::At(t.with_timezone(&Utc)));
    }
    // Days are not a plan duration unit (bakes are never that long); history ages are.
    let (days, rest) = match text.split_once('d') {
        Some((d, rest)) if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) => {
            let days: u64 = d.parse().map_err(|_| SINCE_FORM.to_string())?;
            (days, rest)
        }
        _ => (0, text),
    };
    let rest = if rest.is_empty() {
        Duration::ZERO
    } else {
        glidepath_core::plan::duration::parse(rest).map_err(|_| SINCE_FORM.to_string())?
    };
    let total = days
        .checked_mul(86_400)
        .map(Duration::from_secs)
        .and_then(|d| d.checked_add(rest))
        .ok_or_else(|| SINCE_FORM.to_string())?;
    if total.is_zero() {
        return Err(format!("an age of 0 shows nothing; {SINCE_FORM}"));
    }
    Ok(Since::Ago(total))
}

/// clap's value parser for `--limit`: a whole number of entries, at least 1.
pub fn parse_limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number of entries, at least 1, e.g. --limit 20".into()),
    }
}

/// Releases are listed newest first: keep those started at or after `since`, then the
/// first `limit` (the newest).
pub fn newest_first<T>(
    entries: Vec<T>,
    at: impl Fn(&T) -> DateTime<Utc>,
    since: Option<DateTime<Utc>>,
    limit: Option<usize>,
) -> Vec<T> {
    let mut kept: Vec<T> = entries
        .into_iter()
        .filter(|e| since.is_none_or(|s| at(e) >= s))
        .collect();
    if let Some(n) = limit {
        kept.truncate(n);
    }
    kept
}

/// Operations are listed oldest first: keep those at or after `since`, then the last
/// `limit` (the newest), still oldest first.
pub fn oldest_first<T>(
    entries: Vec<T>,
    at: impl Fn(&T) -> DateTime<Utc>,
    since: Option<DateTime<Utc>>,
    limit: Option<usize>,
) -> Vec<T> {
    let mut kept: Vec<T> = entries
        .into_iter()
        .filter(|e| since.is_none_or(|s| at(e) >= s))
        .collect();
    if let Some(n) = limit {
        let skip = kept.len().saturating_sub(n);
        kept.drain(..skip);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn since_reads_ages_and_rfc3339_times() {
        assert_eq!(
            parse_since("7d"),
            Ok(Since::Ago(Duration::from_secs(7 * 86_400)))
        );
        assert_eq!(
            parse_since("12h"),
            Ok(Since::Ago(Duration::from_secs(12 * 3_600)))
        );
        assert_eq!(
            parse_since("1d12h"),
            Ok(Since::Ago(Duration::from_secs(36 * 3_600)))
        );
        assert_eq!(
            parse_since("2026-11-01T10:00:00+01:00"),
            Ok(Since::At(
                Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap()
            ))
        );
        for bad in ["", "7", "d", "7x", "yesterday", "2026-11-01", "0h", "-3d"] {
            let e = parse_since(bad).unwrap_err();
            assert!(e.contains("7d") && e.contains("RFC 3339"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_age_counts_back_from_now() {
        let now = Utc.with_ymd_and_hms(2026, 11, 8, 0, 0, 0).unwrap();
        let s = parse_since("7d").unwrap();
        assert_eq!(
            s.cutoff(now),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn limit_is_a_positive_whole_number() {
        assert_eq!(parse_limit("3"), Ok(3));
        for bad in ["0", "-1", "x", "2.5", ""] {
            assert!(
                parse_limit(bad).unwrap_err().contains("at least 1"),
                "{bad}"
            );
        }
    }

    #[test]
    fn windows_keep_the_newest_in_the_listed_order() {
        let t = |h| Utc.with_ymd_and_hms(2026, 11, 1, h, 0, 0).unwrap();
        let newest = vec![t(5), t(4), t(3), t(2), t(1)];
        assert_eq!(
            newest_first(newest.clone(), |x| *x, Some(t(3)), None),
            [t(5), t(4), t(3)]
        );
        assert_eq!(
            newest_first(newest.clone(), |x| *x, None, Some(2)),
            [t(5), t(4)]
        );
        assert_eq!(newest_first(newest, |x| *x, Some(t(2)), Some(10)).len(), 4);
        let oldest = vec![t(1), t(2), t(3), t(4), t(5)];
        assert_eq!(
            oldest_first(oldest.clone(), |x| *x, Some(t(4)), None),
            [t(4), t(5)]
        );
        assert_eq!(
            oldest_first(oldest.clone(), |x| *x, None, Some(2)),
            [t(4), t(5)]
        );
        assert_eq!(
            oldest_first(oldest, |x| *x, Some(t(2)), Some(2)),
            [t(4), t(5)]
        );
    }
}
