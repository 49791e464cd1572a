//! When a wave may start hosts: weekly maintenance windows in a time zone
//! (`sat 22:00-sun 06:00 Europe/Paris`, or `22:00-06:00 UTC` for every day)
//! and freeze periods (`2026-12-20..2027-01-04 Europe/Paris`, whole days, or
//! `2026-12-24T18:00..2026-12-27T08:00 UTC`). A host starts only if its
//! expected duration fits inside an open window and touches no freeze.
//! Local times are resolved with the time zone database (daylight saving
//! included) by jiff.

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CalendarError(String);

/// A weekly (or daily, with no days) window, as the operator wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Window {
    text: String,
    days: Option<(Weekday, Weekday)>,
    start: Time,
    end: Time,
    zone: TimeZone,
}

/// A period with no starts at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Freeze {
    text: String,
    from: Timestamp,
    to: Timestamp,
}

fn zone(name: &str) -> Result<TimeZone, CalendarError> {
    TimeZone::get(name).map_err(|_| {
        CalendarError(format!(
            "unknown time zone {name:?} (use a tz database name, e.g. Europe/Paris or UTC)"
        ))
    })
}

fn weekday(text: &str) -> Result<Weekday, CalendarError> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return Err(CalendarError(format!("{text:?} is not a day (mon..sun)"))),
    })
}

fn time(text: &str) -> Result<Time, CalendarError> {
    text.parse::<Time>()
        .map_err(|_| CalendarError(format!("{text:?} is not a time of day (HH:MM)")))
}

impl std::str::FromStr for Window {
    type Err = CalendarError;

    fn from_str(text: &str) -> Result<Self, CalendarError> {
        let usage = || {
            CalendarError(format!(
                "{text:?} is not a window: write \"sat 22:00-sun 06:00 Europe/Paris\" or \"22:00-06:00 UTC\""
            ))
        };
        let (range, zone_name) = text.trim().rsplit_once(' ').ok_or_else(usage)?;
        let (from, to) = range.split_once('-').ok_or_else(usage)?;
        let split = |part: &str| -> Result<(Option<Weekday>, Time), CalendarError> {
            let words: Vec<&str> = part.split_whitespace().collect();
            match words.as_slice() {
                [t] => Ok((None, time(t)?)),
                [d, t] => Ok((Some(weekday(d)?), time(t)?)),
                _ => Err(usage()),
            }
        };
        let ((start_day, start), (end_day, end)) = (split(from)?, split(to)?);
        let days = match (start_day, end_day) {
            (Some(a), Some(b)) => Some((a, b)),
            (None, None) => None,
            _ => return Err(usage()),
        };
        if days.is_none() && start == end {
            return Err(CalendarError(format!("{text:?} is empty")));
        }
        Ok(Self {
            text: text.trim().to_string(),
            days,
            start,
            end,
            zone: zone(zone_name)?,
        })
    }
}

impl TryFrom<String> for Window {
    type Error = CalendarError;
    fn try_from(text: String) -> Result<Self, CalendarError> {
        text.parse()
    }
}

impl From<Window> for String {
    fn from(window: Window) -> String {
        window.text
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Window {
    fn at(&self, date: Date, time: Time) -> Option<Timestamp> {
        DateTime::from_parts(date, time)
            .to_zoned(self.zone.clone())
            .ok()
            .map(|z| z.timestamp())
    }

    /// The window's opening on `date` (local), with its closing; None when
    /// it does not open that day.
    fn opening_on(&self, date: Date) -> Option<(Timestamp, Timestamp)> {
        let days_to_end = match self.days {
            Some((start_day, end_day)) => {
                if date.weekday() != start_day {
                    return None;
                }
                let ahead = end_day.since(start_day);
                if ahead == 0 && self.end <= self.start {
                    7
                } else {
                    i64::from(ahead)
                }
            }
            None => i64::from(self.end <= self.start),
        };
        let end_date = date.checked_add(days_to_end.days()).ok()?;
        Some((self.at(date, self.start)?, self.at(end_date, self.end)?))
    }

    fn local_date(&self, now: Timestamp) -> Date {
        Zoned::new(now, self.zone.clone()).date()
    }

    /// The opening that contains `now`, if any.
    fn open_at(&self, now: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let today = self.local_date(now);
        (0..=8)
            .filter_map(|back| today.checked_sub(back.days()).ok())
            .filter_map(|date| self.opening_on(date))
            .find(|(start, end)| *start <= now && now < *end)
    }

    /// The next opening after `now`.
    fn next_open(&self, now: Timestamp) -> Option<Timestamp> {
        let today = self.local_date(now);
        (0..=8)
            .filter_map(|ahead| today.checked_add(ahead.days()).ok())
            .filter_map(|date| self.opening_on(date))
            .map(|(start, _)| start)
            .find(|start| *start > now)
    }
}

impl std::str::FromStr for Freeze {
    type Err = CalendarError;

    fn from_str(text: &str) -> Result<Self, CalendarError> {
        let usage = || {
            CalendarError(format!(
                "{text:?} is not a freeze: write \"2026-12-20..2027-01-04 Europe/Paris\" (whole days) or \"2026-12-24T18:00..2026-12-27T08:00 UTC\""
            ))
        };
        let (range, zone_name) = text.trim().rsplit_once(' ').ok_or_else(usage)?;
        let (from, to) = range.split_once("..").ok_or_else(usage)?;
        let tz = zone(zone_name)?;
        let instant = |part: &str, end: bool| -> Result<Timestamp, CalendarError> {
            // jiff reads a date out of a date and time too, dropping the
            // time: the form is told by its "T", not by which parse succeeds.
            let local = if part.contains('T') {
                part.parse::<DateTime>().map_err(|_| usage())?
            } else {
                let date = part.parse::<Date>().map_err(|_| usage())?;
                // A whole day: a freeze "to" a date includes that day.
                let day = if end {
                    date.checked_add(1.day()).map_err(|_| usage())?
                } else {
                    date
                };
                day.at(0, 0, 0, 0)
            };
            local
                .to_zoned(tz.clone())
                .map(|z| z.timestamp())
                .map_err(|_| usage())
        };
        let (from, to) = (instant(from, false)?, instant(to, true)?);
        if to <= from {
            return Err(CalendarError(format!("{text:?} ends before it starts")));
        }
        Ok(Self {
            text: text.trim().to_string(),
            from,
            to,
        })
    }
}

impl TryFrom<String> for Freeze {
    type Error = CalendarError;
    fn try_from(text: String) -> Result<Self, CalendarError> {
        text.parse()
    }
}

impl From<Freeze> for String {
    fn from(freeze: Freeze) -> String {
        freeze.text
    }
}

impl std::fmt::Display for Freeze {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A wave's windows and freezes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calendar {
    /// Empty: any time outside the freezes.
    pub windows: Vec<Window>,
    pub freezes: Vec<Freeze>,
}

fn ts(unix_ms: i64) -> Timestamp {
    Timestamp::from_millisecond(unix_ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn shown(t: Timestamp) -> String {
    crate::time::format_unix_ms(t.as_millisecond())
}

impl Calendar {
    /// Why a host expected to take `expected_ms` may not start at `now`;
    /// None when it may.
    pub fn closed(&self, now_unix_ms: i64, expected_ms: i64) -> Option<String> {
        let (now, until) = (ts(now_unix_ms), ts(now_unix_ms.saturating_add(expected_ms)));
        if let Some(freeze) = self.freezes.iter().find(|f| f.from < until && now < f.to) {
            return Some(format!(
                "the freeze {} covers now or the host's expected duration ({})",
                freeze,
                crate::time::format_duration_ms(expected_ms)
            ));
        }
        if self.windows.is_empty() {
            return None;
        }
        let open: Vec<(&Window, Timestamp)> = self
            .windows
            .iter()
            .filter_map(|w| w.open_at(now).map(|(_, end)| (w, end)))
            .collect();
        if open.iter().any(|(_, end)| until <= *end) {
            return None;
        }
        if let Some((window, end)) = open.first() {
            return Some(format!(
                "its expected duration ({}) would overrun the window {window} closing at {}",
                crate::time::format_duration_ms(expected_ms),
                shown(*end)
            ));
        }
        let next = self.next_opening(now_unix_ms);
        Some(match next {
            Some(at) => format!(
                "outside its maintenance windows; the next opens at {}",
                crate::time::format_unix_ms(at)
            ),
            None => "outside its maintenance windows".to_string(),
        })
    }

    /// The next time the calendar may change its answer: a window opening or
    /// a freeze ending (for estimates).
    pub fn next_opening(&self, now_unix_ms: i64) -> Option<i64> {
        let now = ts(now_unix_ms);
        let windows = self.windows.iter().filter_map(|w| w.next_open(now));
        let freezes = self.freezes.iter().map(|f| f.to).filter(|t| *t > now);
        windows.chain(freezes).min().map(|t| t.as_millisecond())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>()
            .expect("a timestamp")
            .as_millisecond()
    }

    const HOUR: i64 = 3600 * 1000;

    #[test]
    fn a_weekend_window_in_paris_follows_the_local_clock() {
        let calendar = Calendar {
            windows: vec!["sat 22:00-sun 06:00 Europe/Paris".parse().expect("window")],
            freezes: vec![],
        };
        // Saturday 2026-11-28: Paris is UTC+1 in winter.
        assert_eq!(calendar.closed(at("2026-11-28T21:00:00Z"), HOUR), None);
        assert_eq!(calendar.closed(at("2026-11-29T04:00:00Z"), HOUR), None);
        let late = calendar
            .closed(at("2026-11-29T04:30:00Z"), HOUR)
            .expect("overruns");
        assert!(late.contains("would overrun the window"), "{late}");
        assert!(late.contains("2026-11-29T05:00:00Z"), "{late}");
        let before = calendar
            .closed(at("2026-11-28T20:59:00Z"), HOUR)
            .expect("closed");
        assert!(
            before.contains("the next opens at 2026-11-28T21:00:00Z"),
            "{before}"
        );
        // Summer time: the same local window is an hour earlier in UTC.
        assert_eq!(calendar.closed(at("2026-06-27T20:00:00Z"), HOUR), None);
        assert!(calendar.closed(at("2026-06-27T19:59:00Z"), HOUR).is_some());
    }

    /// The oracle is the local clock itself, worked out by hand: the hours
    /// of each night are written as UTC, not computed by the code under test.
    #[test]
    fn windows_keep_their_local_hours_across_both_2026_clock_changes() {
        let paris = Calendar {
            windows: vec!["sat 22:00-sun 06:00 Europe/Paris".parse().expect("window")],
            freezes: vec![],
        };
        // Spring forward, Sunday 29 March 2026, 02:00 CET -> 03:00 CEST: the
        // night is 7 real hours, 21:00Z to 04:00Z.
        assert!(paris.closed(at("2026-03-28T20:59:00Z"), HOUR).is_some());
        assert_eq!(paris.closed(at("2026-03-28T21:00:00Z"), HOUR), None);
        assert_eq!(paris.closed(at("2026-03-29T03:00:00Z"), HOUR), None);
        let late = paris
            .closed(at("2026-03-29T03:01:00Z"), HOUR)
            .expect("overruns 04:00Z");
        assert!(late.contains("2026-03-29T04:00:00Z"), "{late}");
        // Fall back, Sunday 25 October 2026, 03:00 CEST -> 02:00 CET: the
        // night is 9 real hours, 20:00Z to 05:00Z.
        assert!(paris.closed(at("2026-10-24T19:59:00Z"), HOUR).is_some());
        assert_eq!(paris.closed(at("2026-10-24T20:00:00Z"), HOUR), None);
        assert_eq!(paris.closed(at("2026-10-25T04:00:00Z"), HOUR), None);
        assert!(paris.closed(at("2026-10-25T04:01:00Z"), HOUR).is_some());
        // From inside the last summer night, the next opens in winter time.
        assert_eq!(
            paris.next_opening(at("2026-10-25T12:00:00Z")),
            Some(at("2026-10-31T21:00:00Z"))
        );

        // New York changes on other dates (8 March, 1 November 2026).
        let new_york = Calendar {
            windows: vec!["01:00-05:00 America/New_York".parse().expect("window")],
            freezes: vec![],
        };
        // 8 March: 01:00 EST is 06:00Z, 05:00 EDT is 09:00Z (3 real hours).
        assert!(new_york.closed(at("2026-03-08T05:59:00Z"), HOUR).is_some());
        assert_eq!(new_york.closed(at("2026-03-08T06:00:00Z"), HOUR), None);
        assert_eq!(new_york.closed(at("2026-03-08T08:00:00Z"), HOUR), None);
        assert!(new_york.closed(at("2026-03-08T08:01:00Z"), HOUR).is_some());
        // 1 November: 01:00 EDT is 05:00Z, 05:00 EST is 10:00Z (5 real hours).
        assert!(new_york.closed(at("2026-11-01T04:59:00Z"), HOUR).is_some());
        assert_eq!(new_york.closed(at("2026-11-01T05:00:00Z"), HOUR), None);
        assert_eq!(new_york.closed(at("2026-11-01T09:00:00Z"), HOUR), None);
        assert!(new_york.closed(at("2026-11-01T09:01:00Z"), HOUR).is_some());
    }

    #[test]
    fn a_daily_window_crosses_midnight() {
        let calendar = Calendar {
            windows: vec!["22:00-06:00 UTC".parse().expect("window")],
            freezes: vec![],
        };
        assert_eq!(calendar.closed(at("2026-11-25T23:00:00Z"), HOUR), None);
        assert_eq!(calendar.closed(at("2026-11-26T02:00:00Z"), HOUR), None);
        assert!(calendar.closed(at("2026-11-26T12:00:00Z"), HOUR).is_some());
        assert_eq!(
            calendar.next_opening(at("2026-11-26T12:00:00Z")),
            Some(at("2026-11-26T22:00:00Z"))
        );
    }

    #[test]
    fn a_freeze_stops_starts_that_would_reach_into_it() {
        let calendar = Calendar {
            windows: vec![],
            freezes: vec!["2026-12-20..2027-01-04 UTC".parse().expect("freeze")],
        };
        assert_eq!(calendar.closed(at("2026-12-19T20:00:00Z"), HOUR), None);
        assert!(calendar.closed(at("2026-12-19T23:30:00Z"), HOUR).is_some());
        assert!(calendar.closed(at("2027-01-04T12:00:00Z"), HOUR).is_some());
        assert_eq!(calendar.closed(at("2027-01-05T00:00:00Z"), HOUR), None);
        assert_eq!(
            calendar.next_opening(at("2026-12-25T00:00:00Z")),
            Some(at("2027-01-05T00:00:00Z"))
        );
    }

    /// Found by the property test: jiff reads "2026-12-24T18:00" as a date,
    /// which made a freeze by the hour one of whole days.
    #[test]
    fn a_freeze_by_the_hour_keeps_its_hours() {
        let calendar = Calendar {
            windows: vec![],
            freezes: vec![
                "2026-11-02T16:00..2026-11-03T07:00 Europe/Paris"
                    .parse()
                    .expect("freeze"),
            ],
        };
        assert_eq!(calendar.closed(at("2026-11-02T09:24:00Z"), HOUR), None);
        assert!(calendar.closed(at("2026-11-02T14:30:00Z"), HOUR).is_some());
        assert!(calendar.closed(at("2026-11-03T05:59:00Z"), HOUR).is_some());
        assert_eq!(calendar.closed(at("2026-11-03T06:00:00Z"), HOUR), None);
    }

    #[test]
    fn every_day_is_read_by_its_short_or_long_name_in_any_case() {
        let days = [
            ("mon", "monday"),
            ("tue", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
            ("sun", "sunday"),
        ];
        // 2026-11-23 is a Monday.
        let monday = at("2026-11-23T10:30:00Z");
        for (i, (short, long)) in days.into_iter().enumerate() {
            for name in [short.to_string(), long.to_string(), long.to_uppercase()] {
                let calendar = Calendar {
                    windows: vec![
                        format!("{name} 10:00-{name} 12:00 UTC")
                            .parse()
                            .expect(short),
                    ],
                    freezes: vec![],
                };
                let that_day = monday + i as i64 * 24 * HOUR;
                assert_eq!(calendar.closed(that_day, HOUR), None, "{name}");
                assert!(
                    calendar.closed(that_day + 24 * HOUR, HOUR).is_some(),
                    "{name}"
                );
            }
        }
    }

    /// Openings are half-open, [start, end), and so are freezes.
    #[test]
    fn boundaries_belong_to_what_begins_there() {
        let daily = Calendar {
            windows: vec!["22:00-06:00 UTC".parse().expect("window")],
            freezes: vec![],
        };
        let at_close = daily
            .closed(at("2026-11-26T06:00:00Z"), 60_000)
            .expect("closed at its end");
        assert!(
            at_close.contains("the next opens at 2026-11-26T22:00:00Z"),
            "{at_close}"
        );
        assert_eq!(
            daily.closed(at("2026-11-26T05:00:00Z"), HOUR),
            None,
            "ends at the close"
        );
        // From an opening instant, the next opening is the following one.
        assert_eq!(
            daily.next_opening(at("2026-11-26T22:00:00Z")),
            Some(at("2026-11-27T22:00:00Z"))
        );
        // A weekly window whose end is before its start on the same day is
        // open all week but those hours.
        let week = Calendar {
            windows: vec!["sat 10:00-sat 08:00 UTC".parse().expect("window")],
            freezes: vec![],
        };
        assert_eq!(
            week.closed(at("2026-11-29T12:00:00Z"), HOUR),
            None,
            "a Sunday"
        );
        assert!(
            week.closed(at("2026-11-28T08:30:00Z"), HOUR).is_some(),
            "Saturday 08:30"
        );

        let frozen = Calendar {
            windows: vec![],
            freezes: vec![
                "2026-12-24T18:00..2026-12-27T08:00 UTC"
                    .parse()
                    .expect("freeze"),
            ],
        };
        assert_eq!(
            frozen.closed(at("2026-12-24T17:00:00Z"), HOUR),
            None,
            "ends as it begins"
        );
        assert!(frozen.closed(at("2026-12-24T17:01:00Z"), HOUR).is_some());
        assert!(frozen.closed(at("2026-12-27T07:59:00Z"), HOUR).is_some());
        assert_eq!(
            frozen.closed(at("2026-12-27T08:00:00Z"), HOUR),
            None,
            "over at its end"
        );
        assert_eq!(frozen.next_opening(at("2026-12-27T08:00:00Z")), None);
        assert_eq!(
            frozen.next_opening(at("2026-12-27T07:59:00Z")),
            Some(at("2026-12-27T08:00:00Z"))
        );
    }

    #[test]
    fn windows_and_freezes_are_shown_and_stored_as_written() {
        let window: Window = " sat 22:00-sun 06:00 Europe/Paris "
            .parse()
            .expect("window");
        let freeze: Freeze = "2026-12-20..2027-01-04 Europe/Paris"
            .parse()
            .expect("freeze");
        assert_eq!(window.to_string(), "sat 22:00-sun 06:00 Europe/Paris");
        assert_eq!(freeze.to_string(), "2026-12-20..2027-01-04 Europe/Paris");
        let stored = serde_json::to_string(&Calendar {
            windows: vec![window.clone()],
            freezes: vec![freeze.clone()],
        })
        .expect("serialises");
        assert_eq!(
            stored,
            r#"{"windows":["sat 22:00-sun 06:00 Europe/Paris"],"freezes":["2026-12-20..2027-01-04 Europe/Paris"]}"#
        );
        let back: Calendar = serde_json::from_str(&stored).expect("reads back");
        assert_eq!(back.windows, vec![window]);
        assert_eq!(back.freezes, vec![freeze]);
    }

    #[test]
    fn bad_windows_and_freezes_are_refused_with_the_reason() {
        for (text, expected) in [
            ("sat 22:00-sun 06:00 Mars/Olympus", "unknown time zone"),
            ("sat 25:00-sun 06:00 UTC", "not a time of day"),
            ("caturday 22:00-sun 06:00 UTC", "not a day"),
            ("sat 22:00-06:00 UTC", "is not a window"),
            ("10:00-10:00 UTC", "is empty"),
            ("always", "is not a window"),
        ] {
            let error = text.parse::<Window>().expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
        for (text, expected) in [
            ("2027-01-04..2026-12-20 UTC", "ends before it starts"),
            ("christmas UTC", "is not a freeze"),
            ("2026-12-20..2027-01-04 Nowhere", "unknown time zone"),
        ] {
            let error = text.parse::<Freeze>().expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
