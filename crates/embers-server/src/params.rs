//! Time parameters as Pyroscope clients send them: `now`, `now-1h`, Unix seconds,
//! milliseconds, microseconds or nanoseconds (by digit count), or `YYYYMMDD`.

/// Parses a time into Unix seconds, relative to `now` (Unix seconds).
pub fn parse_time(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() || s == "now" {
        return Ok(now);
    }
    if let Some(rest) = s.strip_prefix("now-") {
        return Ok(now - parse_duration(rest)?);
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid time {s:?}: use Unix seconds (or ms/µs/ns), YYYYMMDD, or now-1h"
        ));
    }
    let v: i64 = s
        .parse()
        .map_err(|_| format!("time {s:?} is out of range"))?;
    Ok(match s.len() {
        8 => ymd_to_unix(v / 10_000, (v / 100) % 100, v % 100)
            .ok_or_else(|| format!("invalid date {s:?}"))?,
        13 => v / 1_000,
        16 => v / 1_000_000,
        19 => v / 1_000_000_000,
        _ => v,
    })
}

/// Parses an ingest time as Grafana Pyroscope's `attime.Parse` does: `_`, `,` and spaces
/// are ignored; digits are `YYYYMMDD` when they form such a date, else Unix seconds,
/// or ms, µs, ns by length (13, 16, 19 digits); anything else is `now` with optional
/// offsets (`now-1h`, `now-1h30m`, `now+5m`). It never fails: what it cannot read is
/// `now`, so a client's upload is never refused over its clock.
pub fn ingest_time(s: &str, now: i64) -> i64 {
    let s: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, '_' | ',' | ' '))
        .collect();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        if s.len() == 8 {
            let v: i64 = s.parse().unwrap_or(0);
            let (y, m, d) = (v / 10_000, (v / 100) % 100, v % 100);
            if y > 1900 {
                if let Some(t) = ymd_to_unix(y, m, d) {
                    return t;
                }
            }
        }
        // Go's Atoi: out of range reads as 0.
        let v: i64 = s.parse().unwrap_or(0);
        return match s.len() {
            13 => v.div_euclid(1_000),
            16 => v.div_euclid(1_000_000),
            19 => v.div_euclid(1_000_000_000),
            _ => v,
        };
    }
    let offset = match s.find(['+', '-']) {
        Some(i) => &s[i..],
        None => "",
    };
    now.saturating_add(offset_seconds(offset))
}

/// `-1h30m` → −5400, as attime's `parseTimeOffset`: number and unit pairs, units by
/// prefix, unknown units count 0.
fn offset_seconds(offset: &str) -> i64 {
    let (sign, mut rest) = match offset.as_bytes().first() {
        Some(b'-') => (-1, &offset[1..]),
        Some(b'+') => (1, &offset[1..]),
        _ => (1, offset),
    };
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: i64 = rest[..digits].parse().unwrap_or(0);
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let multiplier = if unit.starts_with('s') {
            1
        } else if unit.starts_with("mon") || unit.starts_with('M') {
            30 * 86_400
        } else if unit.starts_with('m') {
            60
        } else if unit.starts_with('h') {
            3600
        } else if unit.starts_with('d') {
            86_400
        } else if unit.starts_with('w') {
            7 * 86_400
        } else if unit.starts_with('y') {
            365 * 86_400
        } else {
            0
        };
        total = total.saturating_add(n.saturating_mul(multiplier).saturating_mul(sign));
    }
    total
}

/// Parses `30s`, `5m`, `5min`, `1h`, `7d`, `2w`, `1M` (30 days), `1y` into seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected a number and a unit, like 1h"))?;
    let unit = match unit {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "M" => 30 * 86_400,
        "y" => 365 * 86_400,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?}: use s, m, h, d, w, M or y"
            ))
        }
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("duration {s:?} is out of range"))
}

/// Days since the epoch of a civil date (Howard Hinnant's algorithm), times 86,400.
fn ymd_to_unix(y: i64, m: i64, d: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400)
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form() {
        let now = 1_700_000_000;
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("now-1h", now), Ok(now - 3600));
        assert_eq!(parse_time("now-15min", now), Ok(now - 900));
        assert_eq!(parse_time("1700000123", now), Ok(1_700_000_123));
        assert_eq!(parse_time("1700000123456", now), Ok(1_700_000_123));
        assert_eq!(parse_time("1700000123456789", now), Ok(1_700_000_123));
        assert_eq!(parse_time("1700000123456789012", now), Ok(1_700_000_123));
        assert_eq!(parse_time("20231114", now), Ok(1_699_920_000));
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("now-1x", now).is_err());
        assert!(parse_time("20231399", now).is_err());
    }

    /// grafana/pyroscope pkg/og/util/attime (and its tests' cases).
    #[test]
    fn ingest_times_as_grafana_reads_them() {
        let now = 1_700_000_000;
        assert_eq!(ingest_time("1700000123", now), 1_700_000_123);
        assert_eq!(ingest_time("1700000123456", now), 1_700_000_123);
        assert_eq!(ingest_time("1700000123456789", now), 1_700_000_123);
        assert_eq!(ingest_time("1700000123456789012", now), 1_700_000_123);
        assert_eq!(ingest_time("1_700_000_123", now), 1_700_000_123);
        assert_eq!(ingest_time("20231114", now), 1_699_920_000);
        // Not a date: seconds.
        assert_eq!(ingest_time("20231399", now), 20_231_399);
        assert_eq!(ingest_time("now", now), now);
        assert_eq!(ingest_time("now-1h", now), now - 3600);
        assert_eq!(ingest_time("now-1h30m", now), now - 5400);
        assert_eq!(ingest_time("now+2d", now), now + 2 * 86_400);
        assert_eq!(ingest_time("now-1mon", now), now - 30 * 86_400);
        assert_eq!(ingest_time("yesterday", now), now);
        assert_eq!(ingest_time("", now), now);
    }
}
