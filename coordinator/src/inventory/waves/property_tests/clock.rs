//! The oracle's clock: civil dates and the local time of the test's zones,
//! worked out from the published daylight-saving rules with arithmetic of
//! its own, never from the time zone database the calendar uses.

use std::collections::BTreeSet;

pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 60 * MIN;
pub const DAY: i64 = 24 * HOUR;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Monday is 0 (1970-01-01 was a Thursday).
pub fn weekday(days: i64) -> i64 {
    (days + 3).rem_euclid(7)
}

fn sunday_on_or_before(days: i64) -> i64 {
    days - (weekday(days) + 1) % 7
}

fn last_sunday(year: i64, month: i64) -> i64 {
    let next = if month == 12 {
        days_from_civil(year + 1, 1, 1)
    } else {
        days_from_civil(year, month + 1, 1)
    };
    sunday_on_or_before(next - 1)
}

fn nth_sunday(year: i64, month: i64, n: i64) -> i64 {
    sunday_on_or_before(days_from_civil(year, month, 1) + 6) + 7 * (n - 1)
}

/// The zones the test uses, with their rules written out: the European Union
/// changes on the last Sundays of March and October at 01:00 UTC; the United
/// States on the second Sunday of March at 02:00 EST (07:00 UTC) and the
/// first Sunday of November at 02:00 EDT (06:00 UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Utc,
    Paris,
    NewYork,
}

impl Zone {
    pub const ALL: [Zone; 3] = [Zone::Utc, Zone::Paris, Zone::NewYork];

    pub fn name(self) -> &'static str {
        match self {
            Zone::Utc => "UTC",
            Zone::Paris => "Europe/Paris",
            Zone::NewYork => "America/New_York",
        }
    }

    /// Summer time of `year`, as UTC instants (ms): from, until.
    pub fn summer(self, year: i64) -> Option<(i64, i64)> {
        match self {
            Zone::Utc => None,
            Zone::Paris => Some((
                last_sunday(year, 3) * DAY + HOUR,
                last_sunday(year, 10) * DAY + HOUR,
            )),
            Zone::NewYork => Some((
                nth_sunday(year, 3, 2) * DAY + 7 * HOUR,
                nth_sunday(year, 11, 1) * DAY + 6 * HOUR,
            )),
        }
    }

    /// Standard and summer offsets from UTC, in minutes.
    fn offsets(self) -> (i64, i64) {
        match self {
            Zone::Utc => (0, 0),
            Zone::Paris => (60, 120),
            Zone::NewYork => (-300, -240),
        }
    }

    fn offset_min(self, utc_ms: i64) -> i64 {
        let (standard, summer) = self.offsets();
        let (year, _, _) = civil_from_days(utc_ms.div_euclid(DAY));
        match self.summer(year) {
            Some((from, until)) if from <= utc_ms && utc_ms < until => summer,
            _ => standard,
        }
    }

    /// The wall clock, in minutes since 1970-01-01 00:00 local.
    pub fn local_min(self, utc_ms: i64) -> i64 {
        utc_ms.div_euclid(MIN) + self.offset_min(utc_ms)
    }

    /// The instant the wall clock shows `local_min`. The generator keeps
    /// boundaries out of the hours clocks change in, so there is one.
    pub fn instant(self, local_min: i64) -> i64 {
        let (standard, summer) = self.offsets();
        let found: BTreeSet<i64> = [standard, summer]
            .into_iter()
            .map(|offset| (local_min - offset) * MIN)
            .filter(|&utc| self.local_min(utc) == local_min)
            .collect();
        assert_eq!(found.len(), 1, "{self:?} {local_min}: {found:?}");
        found.into_iter().next().unwrap_or_default()
    }

    /// Whether a clock change of this zone falls within `margin` of `utc_ms`.
    pub fn changes_near(self, utc_ms: i64, margin: i64) -> bool {
        let (year, _, _) = civil_from_days(utc_ms.div_euclid(DAY));
        self.summer(year)
            .is_some_and(|(a, b)| (a - utc_ms).abs() <= margin || (b - utc_ms).abs() <= margin)
    }
}

pub fn hhmm(minute: i64) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

pub fn date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle's own clock, against the 2026 changes as published.
    #[test]
    fn the_oracle_knows_the_2026_clock_changes() {
        let at = |y, mo, d, h| days_from_civil(y, mo, d) * DAY + h * HOUR;
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            civil_from_days(days_from_civil(2026, 11, 29)),
            (2026, 11, 29)
        );
        assert_eq!(weekday(days_from_civil(2026, 11, 29)), 6, "a Sunday");
        assert_eq!(
            Zone::Paris.summer(2026),
            Some((at(2026, 3, 29, 1), at(2026, 10, 25, 1)))
        );
        assert_eq!(
            Zone::NewYork.summer(2026),
            Some((at(2026, 3, 8, 7), at(2026, 11, 1, 6)))
        );
        // Paris, 29 March: 00:59Z is 01:59 CET, and a minute later 03:00 CEST.
        assert_eq!(
            Zone::Paris.local_min(at(2026, 3, 29, 1) - MIN) % 1440,
            60 + 59
        );
        assert_eq!(Zone::Paris.local_min(at(2026, 3, 29, 1)) % 1440, 3 * 60);
        assert_eq!(
            Zone::NewYork.instant(days_from_civil(2026, 11, 1) * 1440 + 5 * 60),
            at(2026, 11, 1, 10)
        );
    }
}
