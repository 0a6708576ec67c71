//! Wall-clock time in milliseconds since the Unix epoch: entry timestamps, sync records.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// `ms` since the epoch as RFC 3339 in UTC with milliseconds: `2026-12-03T01:02:03.456Z`.
pub fn rfc3339(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Why a time given by a user does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a time: give ms since the epoch (1733000000000), RFC 3339 (2026-12-03T10:00:00Z, or with an offset like +01:00), or a duration back from now (90s, 15m, 1h, 7d, 2w)"
)]
pub struct TimeError(pub String);

/// Reads a time a user gave: ms since the epoch, RFC 3339 (`Z` or `±HH:MM`, optional fraction
/// of a second, `T` or a space between date and time), or a duration back from `now_ms` (`90s`,
/// `15m`, `1h`, `7d`, `2w`, and `500ms`).
///
/// # Errors
/// [`TimeError`] for anything else, or a time before the epoch.
pub fn parse_time(text: &str, now_ms: u64) -> Result<u64, TimeError> {
    let bad = || TimeError(text.to_owned());
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map_err(|_| bad());
    }
    if let Some(back) = parse_duration_ms(t) {
        return Ok(now_ms.saturating_sub(back));
    }
    parse_rfc3339(t).ok_or_else(bad)
}

/// `90s`, `15m`, `1h`, `7d`, `2w`, `500ms` in milliseconds.
fn parse_duration_ms(t: &str) -> Option<u64> {
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    let per = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => return None,
    };
    n.checked_mul(per)
}

fn parse_rfc3339(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = t.get(r)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let days_in_month = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > days_in_month || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &t[19..];
    let mut ms = 0u64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let first3: String = frac[..digits].chars().chain("000".chars()).take(3).collect();
        ms = first3.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_s: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || !matches!(rb[0], b'+' | b'-') || rb[3] != b':' {
                return None;
            }
            let oh = i64::from(rest[1..3].parse::<u32>().ok()?);
            let om = i64::from(rest[4..6].parse::<u32>().ok()?);
            if oh > 23 || om > 59 {
                return None;
            }
            let sign = if rb[0] == b'-' { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(i64::from(y), mo, d);
    let secs =
        days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s.min(59)) - offset_s;
    let secs = u64::try_from(secs).ok()?;
    secs.checked_mul(1000)?.checked_add(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_prints_and_parses_back() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day of a century divisible by 400), by hand: 11016 days.
        assert_eq!(rfc3339(11_016 * 86_400_000 + 45_296_789), "2000-02-29T12:34:56.789Z");
        assert_eq!(rfc3339(1_764_720_000_000), "2025-12-03T00:00:00.000Z");
        for ms in [0, 1, 999, 1_000, 951_782_400_000, 1_764_720_123_456, 4_102_444_800_000] {
            assert_eq!(parse_time(&rfc3339(ms), 0), Ok(ms), "{}", rfc3339(ms));
        }
        let t = |s: &str| parse_time(s, 0);
        assert_eq!(t("2025-12-03T01:00:00+01:00"), Ok(1_764_720_000_000));
        assert_eq!(t("2025-12-02T19:30:00-04:30"), Ok(1_764_720_000_000));
        assert_eq!(t("2025-12-03 00:00:00.5Z"), Ok(1_764_720_000_500));
        assert_eq!(t("2025-12-03T00:00:00.123456789Z"), Ok(1_764_720_000_123));
        for bad in [
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-12-03T24:00:00Z",
            "2025-12-03T00:00:00",
            "2025-12-03T00:00:00+1:00",
            "2025-12-03T00:00:00.Z",
            "1969-12-31T23:59:59Z",
            "yesterday",
            "1y",
            "",
            "-5",
        ] {
            assert!(t(bad).is_err(), "{bad}");
        }
        assert!(t("yesterday").unwrap_err().to_string().contains("RFC 3339"));
    }

    #[test]
    fn durations_count_back_from_now_and_numbers_are_ms() {
        let now = 10_000_000_000;
        assert_eq!(parse_time("1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_time("90s", now), Ok(now - 90_000));
        assert_eq!(parse_time("15m", now), Ok(now - 900_000));
        assert_eq!(parse_time("2w", now), Ok(now - 1_209_600_000));
        assert_eq!(parse_time("500ms", now), Ok(now - 500));
        assert_eq!(parse_time("100000d", now), Ok(0), "clamped at the epoch");
        assert_eq!(parse_time("1733000000000", now), Ok(1_733_000_000_000));
    }
}
