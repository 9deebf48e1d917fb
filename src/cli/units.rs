//! Sizes and durations as the command line spells them (`64k`, `10m`,
//! `500ms`, `30s`), shared by `fastgate serve` and `fastgate request`.
//! Errors are bare reasons; the caller names the flag. Public (in the
//! hidden `cli` module) for the fuzz targets only.

use std::time::Duration;

/// A size in bytes: a whole number, or one followed by `k`, `m` or `g`
/// (any case) for KiB, MiB or GiB, as nginx spells sizes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    const EXPECTED: &str = "expected a size like 65536, 64k, 10m or 1g";
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => return Err(EXPECTED.into()),
    };
    if digits.is_empty() {
        return Err(EXPECTED.into());
    }
    let n: u64 = digits.parse().map_err(|_| "size too large".to_string())?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| "size too large".into())
}

/// A duration: `500ms`, `30s`, `5m`, `1h`, or a plain `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a duration like 500ms, 30s or 5m";
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(EXPECTED.into()),
    };
    let n: u64 = digits.parse().map_err(|_| EXPECTED.to_string())?;
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| "duration too long".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples() {
        assert_eq!(parse_size("65536"), Ok(65_536));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("10mb").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5x").is_err());
    }
}
