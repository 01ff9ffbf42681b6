//! Times and spans of time as people read them (the UI's pages, the CLI's lines): no time zone
//! database, everything in UTC.

/// A time (milliseconds since 1970) as `2026-12-02 03:04:05 UTC`.
pub fn utc_text(ms: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|at| at.format(&format).ok())
        .unwrap_or_else(|| format!("{ms} ms since 1970"))
}

/// A span of time: `69 ms`, `4.2 s`, `3 min`, `2 h 5 min`, `3 days`.
pub fn span_text(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min", ms / 60_000),
        3_600_000..86_400_000 => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
        _ => format!("{} days", ms / 86_400_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_write_them() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(1_796_180_645_000), "2026-12-02 03:04:05 UTC");
        assert_eq!(span_text(69), "69 ms");
        assert_eq!(span_text(4_200), "4.2 s");
        assert_eq!(span_text(180_000), "3 min");
        assert_eq!(span_text(7_500_000), "2 h 5 min");
        assert_eq!(span_text(3 * 86_400_000), "3 days");
    }
}
