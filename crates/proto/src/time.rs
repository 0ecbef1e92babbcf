//! Calendar arithmetic for logs and reports: Unix time to UTC dates,
//! without a clock or a time-zone database.

/// `YYYY-MM-DD` of a Unix time.
pub fn date(t: u64) -> String {
    let (y, m, d) = civil(t / 86400);
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 UTC time of a Unix time.
pub fn utc(t: u64) -> String {
    let s = t % 86400;
    format!("{}T{:02}:{:02}:{:02}Z", date(t), s / 3600, s / 60 % 60, s % 60)
}

/// Year, month, day of a day count since 1970-01-01 (proleptic
/// Gregorian), by the era arithmetic of the civil calendar.
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_795_574_828), "2026-11-25T02:47:08Z");
    }
}
