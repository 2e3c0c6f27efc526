//! Duration flag values: `500ms`, `5s`, `2m` or a bare number of seconds.

use std::time::Duration;

/// Why a duration flag value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration like 500ms, 5s or 2m")]
    NotANumber(String),
    #[error("{0:?}: unit must be ms, s or m")]
    Unit(String),
    #[error("{value:?}: {source}")]
    Range {
        value: String,
        #[source]
        source: std::time::TryFromFloatSecsError,
    },
}

/// Parses `500ms`, `5s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num
        .parse()
        .map_err(|_| DurationError::NotANumber(s.to_owned()))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(DurationError::Unit(s.to_owned())),
    };
    Duration::try_from_secs_f64(secs).map_err(|source| DurationError::Range {
        value: s.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("x").is_err());
    }
}
