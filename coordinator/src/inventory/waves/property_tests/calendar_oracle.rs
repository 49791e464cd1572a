//! What the calendar must say, worked out minute by minute from the oracle's
//! clock; and the windows and freezes the test generates.

use rand::Rng;
use rand::rngs::StdRng;

use super::clock::{DAYS, MIN, Zone, date, hhmm, weekday};
use mf_core::wave::calendar::{Calendar, Freeze, Window};

/// A maintenance window as the oracle sees it: a range of the local day, or
/// of the local week.
#[derive(Debug)]
pub struct OpenHours {
    pub zone: Zone,
    pub days: Option<(i64, i64)>,
    pub start: i64,
    pub end: i64,
}

impl OpenHours {
    pub fn text(&self) -> String {
        match self.days {
            None => format!(
                "{}-{} {}",
                hhmm(self.start),
                hhmm(self.end),
                self.zone.name()
            ),
            Some((a, b)) => format!(
                "{} {}-{} {} {}",
                DAYS[a as usize],
                hhmm(self.start),
                DAYS[b as usize],
                hhmm(self.end),
                self.zone.name()
            ),
        }
    }

    /// Whether the local clock at `utc_ms` is inside the range.
    pub fn covers(&self, utc_ms: i64) -> bool {
        let local = self.zone.local_min(utc_ms);
        let (day, minute) = (local.div_euclid(1440), local.rem_euclid(1440));
        let (from, to, now) = match self.days {
            None => (self.start, self.end, minute),
            Some((a, b)) => (
                a * 1440 + self.start,
                b * 1440 + self.end,
                weekday(day) * 1440 + minute,
            ),
        };
        if from < to {
            from <= now && now < to
        } else {
            now >= from || now < to
        }
    }
}

/// A freeze as the oracle sees it: two instants.
#[derive(Debug)]
pub struct Frozen {
    pub text: String,
    pub from: i64,
    pub until: i64,
}

/// What the calendar must say, worked out minute by minute.
#[derive(Debug, Default)]
pub struct Oracle {
    pub windows: Vec<OpenHours>,
    pub freezes: Vec<Frozen>,
}

impl Oracle {
    /// Whether a host taking `len` may start at `now` (both whole minutes):
    /// every minute of its run inside one window, none in a freeze.
    pub fn fits(&self, now: i64, len: i64) -> bool {
        let frozen = self
            .freezes
            .iter()
            .any(|f| f.from < now + len && now < f.until);
        let open = self.windows.is_empty()
            || self
                .windows
                .iter()
                .any(|w| (0..len / MIN).all(|k| w.covers(now + k * MIN)));
        !frozen && open
    }

    pub fn calendar(&self) -> Calendar {
        Calendar {
            windows: self
                .windows
                .iter()
                .map(|w| w.text().parse::<Window>().expect("window"))
                .collect(),
            freezes: self
                .freezes
                .iter()
                .map(|f| f.text.parse::<Freeze>().expect("freeze"))
                .collect(),
        }
    }
}

/// A time of day on the half hour outside 01:00-04:00, where no clock of
/// these zones changes.
fn boundary(rng: &mut StdRng) -> i64 {
    let slots: Vec<i64> = (0..48)
        .map(|h| h * 30)
        .filter(|&m| !(60..240).contains(&m))
        .collect();
    slots[rng.gen_range(0..slots.len())]
}

pub fn generate_window(rng: &mut StdRng) -> OpenHours {
    let zone = Zone::ALL[rng.gen_range(0..3)];
    loop {
        let start = boundary(rng);
        let end = boundary(rng);
        let days = rng
            .gen_bool(0.5)
            .then(|| (rng.gen_range(0..7), rng.gen_range(0..7)));
        let window = OpenHours {
            zone,
            days,
            start,
            end,
        };
        // Long enough for the longest host (90 minutes) to fit some day.
        let open_minutes = match days {
            None => (end - start).rem_euclid(1440),
            Some((a, b)) => (b * 1440 + end - a * 1440 - start).rem_euclid(7 * 1440),
        };
        if open_minutes >= 3 * 60 {
            return window;
        }
    }
}

/// A freeze of a few hours to two days, from up to five days after `start`.
pub fn generate_freeze(rng: &mut StdRng, start: i64) -> Frozen {
    let zone = Zone::ALL[rng.gen_range(0..3)];
    let first_day = zone.local_min(start).div_euclid(1440) + rng.gen_range(0..5);
    if rng.gen_bool(0.5) {
        let last_day = first_day + rng.gen_range(0..2);
        Frozen {
            text: format!("{}..{} {}", date(first_day), date(last_day), zone.name()),
            from: zone.instant(first_day * 1440),
            until: zone.instant((last_day + 1) * 1440),
        }
    } else {
        let from = first_day * 1440 + boundary(rng);
        let until = loop {
            let until = (first_day + rng.gen_range(0..3)) * 1440 + boundary(rng);
            if until > from + 60 {
                break until;
            }
        };
        let shown = |local: i64| format!("{}T{}", date(local.div_euclid(1440)), hhmm(local % 1440));
        Frozen {
            text: format!("{}..{} {}", shown(from), shown(until), zone.name()),
            from: zone.instant(from),
            until: zone.instant(until),
        }
    }
}
