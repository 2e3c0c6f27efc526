//! Pure: the operator's rollout controls. Pause (`stellar.org/rollout: paused` on a
//! StellarNode, its workload or its namespace), the escape hatch for a stuck workload
//! (`stellar.org/rollout: skip-wait`), and daily UTC rollout windows (`--rollout-window`,
//! overridden per StellarNode by `stellar.org/rollout-window`).

use std::fmt;

/// The annotation that pauses a rollout or lets a stuck workload be skipped.
pub const ANNOTATION_ROLLOUT: &str = "stellar.org/rollout";
/// The per-StellarNode rollout window override.
pub const ANNOTATION_WINDOW: &str = "stellar.org/rollout-window";

/// The value of [`ANNOTATION_ROLLOUT`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Control {
    #[default]
    Normal,
    /// Touch nothing: no annotation, no pod deletion.
    Paused,
    /// Once stuck, this workload stops holding its network's slot.
    SkipWait,
}

impl Control {
    /// Reads the annotation's value. An unknown value is `Normal`, returned with the
    /// text to log (a typo must not pause or release anything silently).
    pub fn parse(value: Option<&str>) -> (Self, Option<String>) {
        match value.map(str::trim) {
            None | Some("") => (Self::Normal, None),
            Some(v) if v.eq_ignore_ascii_case("paused") => (Self::Paused, None),
            Some(v) if v.eq_ignore_ascii_case("skip-wait") => (Self::SkipWait, None),
            Some(v) => (
                Self::Normal,
                Some(format!(
                    "{ANNOTATION_ROLLOUT}: {v:?} is not understood; use \"paused\" or \"skip-wait\", or remove it"
                )),
            ),
        }
    }
}

/// Where a pause was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PauseLevel {
    Namespace,
    StellarNode,
    Workload,
}

impl PauseLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Namespace => "namespace",
            Self::StellarNode => "StellarNode",
            Self::Workload => "workload",
        }
    }
}

/// One daily window in UTC, `[start, end)` in minutes of the day. `end < start` wraps
/// past midnight; `start == end` would be empty and is refused by the parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    start: u16,
    end: u16,
}

/// Minutes in a day.
const DAY: u16 = 24 * 60;

impl Window {
    fn contains(self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }

    /// Minutes from `minute` until this window opens (0 when open).
    fn opens_in(self, minute: u16) -> u16 {
        if self.contains(minute) {
            0
        } else {
            (self.start + DAY - minute) % DAY
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// When rollouts may start. `Always` when no window is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Windows {
    #[default]
    Always,
    Daily(Vec<Window>),
}

/// A window that cannot be read, with what to write instead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "rollout window {text:?}: {why}; write daily UTC windows as HH:MM-HH:MM[,HH:MM-HH:MM...], e.g. 02:00-04:00, or \"always\""
)]
pub struct WindowError {
    text: String,
    why: &'static str,
}

fn minute_of(hhmm: &str) -> Option<u16> {
    let (h, m) = hhmm.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    // 24:00 is the end of the day.
    if (h < 24 && m < 60) || (h == 24 && m == 0) {
        Some(h * 60 + m)
    } else {
        None
    }
}

impl Windows {
    /// Parses `always`, or a comma-separated list of `HH:MM-HH:MM` windows in UTC.
    pub fn parse(text: &str) -> Result<Self, WindowError> {
        let err = |why| WindowError {
            text: text.to_owned(),
            why,
        };
        let t = text.trim();
        if t.eq_ignore_ascii_case("always") {
            return Ok(Self::Always);
        }
        if t.is_empty() {
            return Err(err("it is empty"));
        }
        let mut out = Vec::new();
        for part in t.split(',') {
            let (a, b) = part
                .split_once('-')
                .ok_or_else(|| err("a window needs a start and an end"))?;
            let start = minute_of(a).ok_or_else(|| err("a time is not HH:MM (00:00 to 24:00)"))?;
            let end = minute_of(b).ok_or_else(|| err("a time is not HH:MM (00:00 to 24:00)"))?;
            // 24:00 ends a window at midnight; as a start it is 00:00.
            let start = start % DAY;
            if start == end || (start == 0 && end == 0) {
                return Err(err("a window starts where it ends"));
            }
            out.push(Window { start, end });
        }
        Ok(Self::Daily(out))
    }

    /// Whether a rollout may start at `minute` of the UTC day.
    pub fn open_at(&self, minute: u16) -> bool {
        match self {
            Self::Always => true,
            Self::Daily(ws) => ws.iter().any(|w| w.contains(minute % DAY)),
        }
    }

    /// Minutes until the next window opens (0 when open).
    pub fn opens_in(&self, minute: u16) -> u16 {
        match self {
            Self::Always => 0,
            Self::Daily(ws) => ws
                .iter()
                .map(|w| w.opens_in(minute % DAY))
                .min()
                .unwrap_or(0),
        }
    }
}

impl fmt::Display for Windows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Daily(ws) => {
                let parts: Vec<String> = ws.iter().map(ToString::to_string).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

/// Minute of the UTC day for a time given in seconds since the Unix epoch.
pub fn minute_of_day(unix_secs: u64) -> u16 {
    ((unix_secs / 60) % u64::from(DAY)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(t: &str) -> Windows {
        Windows::parse(t).expect(t)
    }

    #[test]
    fn controls_parse() {
        assert_eq!(Control::parse(None), (Control::Normal, None));
        assert_eq!(Control::parse(Some(" Paused ")).0, Control::Paused);
        assert_eq!(Control::parse(Some("skip-wait")).0, Control::SkipWait);
        let (c, warn) = Control::parse(Some("pause"));
        assert_eq!(c, Control::Normal);
        assert!(
            warn.expect("warning")
                .contains("\"paused\" or \"skip-wait\"")
        );
    }

    #[test]
    fn windows_parse_and_contain() {
        let x = w("02:00-04:00");
        assert!(!x.open_at(119));
        assert!(x.open_at(120));
        assert!(x.open_at(239));
        assert!(!x.open_at(240), "the end is excluded");
        assert_eq!(x.opens_in(60), 60);
        assert_eq!(x.opens_in(240), 22 * 60, "tomorrow");
        assert_eq!(x.to_string(), "02:00-04:00");
        // Past midnight.
        let y = w("22:30-01:00");
        assert!(y.open_at(23 * 60) && y.open_at(0) && y.open_at(59));
        assert!(!y.open_at(60) && !y.open_at(22 * 60));
        // Several, the soonest counts.
        let z = w("02:00-03:00, 14:00-15:00");
        assert_eq!(z.opens_in(4 * 60), 10 * 60);
        assert_eq!(z.opens_in(15 * 60), 11 * 60);
        assert!(w("00:00-24:00").open_at(0) && w("00:00-24:00").open_at(DAY - 1));
        assert_eq!(w("always"), Windows::Always);
        assert!(Windows::Always.open_at(5));
    }

    #[test]
    fn bad_windows_say_how_to_write_one() {
        for bad in [
            "",
            "2-4",
            "02:00",
            "25:00-26:00",
            "02:00-02:00",
            "02:60-03:00",
            "ab:cd-01:00",
            "1:5-2:00",
        ] {
            let e = Windows::parse(bad).expect_err(bad).to_string();
            assert!(e.contains("HH:MM-HH:MM"), "{bad}: {e}");
        }
        assert!(
            Windows::parse("2:00-4:00").is_ok(),
            "one-digit hours are fine"
        );
    }

    #[test]
    fn minute_of_day_is_utc() {
        assert_eq!(minute_of_day(0), 0);
        assert_eq!(minute_of_day(86_400 + 3 * 3600 + 7 * 60 + 59), 187);
    }
}
