//! Venue numbers and times into the engine's integers, exactly and without allocating.
//!
//! [`parse`] turns a decimal token (`"0.10000000"`, `45283.5`, and, should a venue ever
//! send one, `4.8E-7`) into a mantissa at the symbol's scale and also says how many
//! fractional digits the venue wrote, trailing zeros included: Kraken's book checksum is
//! computed over the venue's own rendering, which those digits reproduce. [`rfc3339_ns`]
//! reads the ISO 8601 UTC times of Coinbase and Kraken into nanoseconds.

use tickwire_engine::fixed::{DecimalError, MAX_SCALE};

/// A parsed decimal: the mantissa at the requested scale, and the digits as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    /// Value × 10^scale.
    pub mantissa: i64,
    /// Fractional digits in the venue's rendering (`0.10000000` → 8, `45283.5` → 1).
    pub digits: u8,
}

/// Parses a plain or exponent decimal into a mantissa at `scale` (see [`Decimal`]).
///
/// ```
/// use tickwire_feeds::decimal::{parse, Decimal};
/// assert_eq!(parse(b"0.10000000", 8), Ok(Decimal { mantissa: 10_000_000, digits: 8 }));
/// assert_eq!(parse(b"4.8E-7", 8), Ok(Decimal { mantissa: 48, digits: 8 }));
/// ```
pub fn parse(text: &[u8], scale: u8) -> Result<Decimal, DecimalError> {
    if scale > MAX_SCALE {
        return Err(DecimalError::Overflow(scale));
    }
    let (negative, body) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (number, exponent) = match body.iter().position(|&c| c == b'e' || c == b'E') {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let exponent: i32 = match exponent {
        None => 0,
        Some(e) => {
            let (neg, digits) = match e.first() {
                Some(b'-') => (true, &e[1..]),
                Some(b'+') => (false, &e[1..]),
                _ => (false, e),
            };
            if digits.is_empty() || digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
                return Err(DecimalError::Syntax);
            }
            let v = digits
                .iter()
                .fold(0i32, |acc, &c| acc * 10 + i32::from(c - b'0'));
            if neg {
                -v
            } else {
                v
            }
        }
    };
    // Collect the significant digits into an integer, remembering the written fraction.
    let mut value: i128 = 0;
    let mut fraction: i32 = 0;
    let mut seen_point = false;
    let mut seen_digit = false;
    for &c in number {
        match c {
            b'0'..=b'9' => {
                seen_digit = true;
                value = value * 10 + i128::from(c - b'0');
                if value > i128::from(i64::MAX) * 1_000_000_000_000_000_000 {
                    return Err(DecimalError::Overflow(scale));
                }
                if seen_point {
                    fraction += 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => return Err(DecimalError::Syntax),
        }
    }
    if !seen_digit {
        return Err(DecimalError::Syntax);
    }
    // The value is `value × 10^-fraction_after_exponent`.
    let written = fraction - exponent;
    let digits = u8::try_from(written.clamp(0, 255)).unwrap_or(u8::MAX);
    let shift = i32::from(scale) - written;
    let pow10 = |n: u32| -> Option<i128> {
        if n <= u32::from(MAX_SCALE) {
            Some(i128::from(tickwire_engine::fixed::unit(n as u8)))
        } else {
            10i128.checked_pow(n)
        }
    };
    let mantissa = if shift >= 0 {
        let factor = pow10(shift.unsigned_abs()).ok_or(DecimalError::Overflow(scale))?;
        value
            .checked_mul(factor)
            .ok_or(DecimalError::Overflow(scale))?
    } else {
        let factor = pow10(shift.unsigned_abs()).ok_or(DecimalError::TooPrecise(scale))?;
        if value % factor != 0 {
            return Err(DecimalError::TooPrecise(scale));
        }
        value / factor
    };
    let mantissa = i64::try_from(mantissa).map_err(|_| DecimalError::Overflow(scale))?;
    Ok(Decimal {
        mantissa: if negative { -mantissa } else { mantissa },
        digits,
    })
}

/// Nanoseconds since the Unix epoch of an RFC 3339 time (`2023-09-25T07:48:36.925533Z`,
/// any number of fractional digits, `Z` or `±hh:mm`); `None` when it is not one.
///
/// ```
/// use tickwire_feeds::decimal::rfc3339_ns;
/// assert_eq!(rfc3339_ns(b"1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
/// ```
pub fn rfc3339_ns(t: &[u8]) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0i64, |a, &c| a * 10 + i64::from(c - b'0')))
    };
    if t.len() < 20 || t[4] != b'-' || t[7] != b'-' || !matches!(t[10], b'T' | b't' | b' ') {
        return None;
    }
    if t[13] != b':' || t[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if t.get(i) == Some(&b'.') {
        i += 1;
        let mut place = 100_000_000i64;
        let start = i;
        while i < t.len() && t[i].is_ascii_digit() {
            nanos += i64::from(t[i] - b'0') * place;
            place /= 10;
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_s = match t.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let h = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let m = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            let s = h * 3600 + m * 60;
            if *sign == b'+' {
                s
            } else {
                -s
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    let ns = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    u64::try_from(ns).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds (Binance's `E`/`T`) to nanoseconds, saturating.
pub fn ms_to_ns(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(mantissa: i64, digits: u8) -> Result<Decimal, DecimalError> {
        Ok(Decimal { mantissa, digits })
    }

    #[test]
    fn parses_with_written_digits() {
        assert_eq!(parse(b"45283.5", 10), d(452_835_000_000_000, 1));
        assert_eq!(parse(b"0.00100000", 8), d(100_000, 8));
        assert_eq!(parse(b"0", 8), d(0, 0));
        assert_eq!(parse(b"-1.25", 2), d(-125, 2));
        assert_eq!(parse(b"1e-08", 8), d(1, 8));
        assert_eq!(parse(b"1.5E+2", 0), d(150, 0));
        assert_eq!(parse(b"0.123", 2), Err(DecimalError::TooPrecise(2)));
        assert_eq!(parse(b"0.120", 2), d(12, 3));
        assert_eq!(parse(b"12a", 2), Err(DecimalError::Syntax));
        assert_eq!(parse(b"", 2), Err(DecimalError::Syntax));
        assert_eq!(parse(b"1e", 2), Err(DecimalError::Syntax));
        assert_eq!(parse(b"1e9999", 2), Err(DecimalError::Syntax));
        assert_eq!(
            parse(b"99999999999999999999", 8),
            Err(DecimalError::Overflow(8))
        );
        assert_eq!(
            parse(b"9999999999999999999999999999999999999999999", 0),
            Err(DecimalError::Overflow(0))
        );
    }

    #[test]
    fn reads_rfc3339() {
        assert_eq!(
            rfc3339_ns(b"2023-09-25T07:48:36.925533Z"),
            Some(1_695_628_116_925_533_000)
        );
        assert_eq!(
            rfc3339_ns(b"2026-09-25T17:48:26.844359566Z"),
            Some(1_790_358_506_844_359_566)
        );
        assert_eq!(
            rfc3339_ns(b"2019-08-14T20:42:27.265Z"),
            Some(1_565_815_347_265_000_000)
        );
        assert_eq!(
            rfc3339_ns(b"2019-08-14T22:42:27+02:00"),
            Some(1_565_815_347_000_000_000)
        );
        assert_eq!(rfc3339_ns(b"2019-08-14 20:42:27"), None);
        assert_eq!(rfc3339_ns(b"2019-13-14T20:42:27Z"), None);
        assert_eq!(rfc3339_ns(b"garbage"), None);
    }
}
