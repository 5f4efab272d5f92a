//! Maintenance windows: when a site lets installs start, in the site's own time zone.
//!
//! `"mon-fri 22:00-06:00"` (overnight: from 22:00 on a weekday until 06:00 the next morning),
//! `"sat,sun 00:00-24:00"`, `"daily 01:00-05:00"`. A site without windows is always open.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// Most windows per site.
pub const MAX_WINDOWS: usize = 32;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Bit `d` set: the window starts on day `d` (0 Monday … 6 Sunday).
    pub days: u8,
    /// Minutes after local midnight.
    pub start: u16,
    /// Minutes after local midnight; at or before `start`: the next day.
    pub end: u16,
}

fn day(s: &str) -> Result<usize, String> {
    DAYS.iter()
        .position(|d| s.eq_ignore_ascii_case(d))
        .ok_or_else(|| format!("{s:?} is not a day (mon, tue, … sun)"))
}

fn minutes(s: &str) -> Result<u16, String> {
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: a time as HH:MM"))?;
    let (h, m): (u16, u16) = (
        h.parse().map_err(|_| format!("{s:?}: a time as HH:MM"))?,
        m.parse().map_err(|_| format!("{s:?}: a time as HH:MM"))?,
    );
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(format!("{s:?}: 00:00 to 24:00"));
    }
    Ok(h * 60 + m)
}

impl Window {
    /// `"mon-fri 22:00-06:00"`, `"sat,sun 00:00-24:00"`, `"daily 01:00-05:00"`.
    pub fn parse(text: &str) -> Result<Window, String> {
        let (days_text, times) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("{text:?}: days and times, as \"mon-fri 22:00-06:00\""))?;
        let mut days = 0u8;
        if days_text.eq_ignore_ascii_case("daily") {
            days = 0x7f;
        } else {
            for part in days_text.split(',') {
                match part.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (day(a)?, day(b)?);
                        let mut d = a;
                        loop {
                            days |= 1 << d;
                            if d == b {
                                break;
                            }
                            d = (d + 1) % 7;
                        }
                    }
                    None => days |= 1 << day(part)?,
                }
            }
        }
        let (a, b) = times
            .trim()
            .split_once('-')
            .ok_or_else(|| format!("{text:?}: a time range as 22:00-06:00"))?;
        let (start, end) = (minutes(a)?, minutes(b)?);
        if start == end {
            return Err(format!("{text:?}: a window must not be empty"));
        }
        Ok(Window { days, start, end })
    }

    fn on(&self, d: usize) -> bool {
        self.days & (1 << (d % 7)) != 0
    }

    /// Is the window open at local weekday `d` (0 Monday) and minute `m`?
    fn open_at(&self, d: usize, m: u16) -> bool {
        if self.start < self.end {
            self.on(d) && (self.start..self.end).contains(&m)
        } else {
            (self.on(d) && m >= self.start) || (self.on(d + 6) && m < self.end)
        }
    }
}

/// A time zone by its IANA name.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name)
        .map_err(|_| format!("{name:?} is not a known time zone (e.g. Europe/Berlin)"))
}

/// Is some window open at `now_ms` in `tz`? No windows: always.
pub fn open(windows: &[Window], tz: &TimeZone, now_ms: i64) -> bool {
    if windows.is_empty() {
        return true;
    }
    let Ok(ts) = Timestamp::from_millisecond(now_ms) else {
        return false;
    };
    let local = tz.to_datetime(ts);
    let d = usize::try_from(local.weekday().to_monday_zero_offset()).unwrap_or(0);
    let m =
        u16::try_from(local.hour()).unwrap_or(0) * 60 + u16::try_from(local.minute()).unwrap_or(0);
    windows.iter().any(|w| w.open_at(d, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().expect("timestamp").as_millisecond()
    }

    #[test]
    fn windows_open_in_the_sites_own_time() {
        let berlin = zone("Europe/Berlin").expect("tz");
        let w = [Window::parse("mon-fri 22:00-06:00").expect("valid")];
        // Tuesday 2026-12-01 21:30 UTC is 22:30 in Berlin (CET, UTC+1): open.
        assert!(open(&w, &berlin, at("2026-12-01T21:30:00Z")));
        // 20:30 UTC is 21:30 in Berlin: closed.
        assert!(!open(&w, &berlin, at("2026-12-01T20:30:00Z")));
        // Saturday 05:00 Berlin: the Friday night window still runs.
        assert!(open(&w, &berlin, at("2026-12-05T04:00:00Z")));
        // Saturday 23:00 Berlin: no window starts on Saturday.
        assert!(!open(&w, &berlin, at("2026-12-05T22:00:00Z")));
        let tokyo = zone("Asia/Tokyo").expect("tz");
        assert!(
            !open(&w, &tokyo, at("2026-12-01T21:30:00Z")),
            "06:30 in Tokyo"
        );
        assert!(
            open(&[], &tokyo, at("2026-12-01T21:30:00Z")),
            "no windows: open"
        );
    }

    #[test]
    fn windows_parse_and_refuse() {
        assert_eq!(
            Window::parse("sat,sun 00:00-24:00").expect("valid").days,
            0b110_0000
        );
        assert_eq!(
            Window::parse("fri-mon 10:00-11:00").expect("valid").days,
            0b111_0001
        );
        for bad in [
            "",
            "mon",
            "mon 10-11",
            "xyz 10:00-11:00",
            "mon 10:00-10:00",
            "mon 25:00-26:00",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad:?}");
        }
        assert!(zone("Mars/Olympus").is_err());
    }
}
