//! Fixed-point decimals: an `i64` mantissa with a per-symbol number of decimal digits.
//!
//! Prices and sizes never pass through floating point. A feed parses the venue's decimal
//! string into a mantissa at the symbol's scale ([`parse`]), and the encoder prints the
//! mantissa back with the exact digits, shortest form ([`write`]): `67000.5`, never
//! `67000.50000` or `6.70005e4`. Nothing here allocates.

use thiserror::Error;

/// The largest number of decimal digits a scale may have (10^18 still fits an `i64`).
pub const MAX_SCALE: u8 = 18;

const POW10: [i64; 19] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
    10_000_000_000_000_000,
    100_000_000_000_000_000,
    1_000_000_000_000_000_000,
];

/// `10^scale`, the mantissa of `1` at that scale.
pub fn unit(scale: u8) -> i64 {
    POW10[usize::from(scale.min(MAX_SCALE))]
}

/// Why a decimal string could not be turned into a mantissa.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecimalError {
    /// Empty input, a stray character, or an exponent.
    #[error("not a plain decimal number")]
    Syntax,
    /// More non-zero fractional digits than the symbol's scale keeps.
    #[error("more than {0} decimal digits: raise the symbol's scale")]
    TooPrecise(u8),
    /// The value does not fit an `i64` mantissa at this scale.
    #[error("value out of range for scale {0}")]
    Overflow(u8),
}

/// Parses a plain decimal (`"67000.50"`, `"-0.001"`, `"5"`) into a mantissa at `scale`.
///
/// Exact: trailing zeros beyond the scale are accepted, other extra digits are an error.
///
/// ```
/// use tickwire_engine::fixed;
/// assert_eq!(fixed::parse(b"67000.50", 2), Ok(6_700_050));
/// assert!(fixed::parse(b"0.001", 2).is_err());
/// ```
pub fn parse(text: &[u8], scale: u8) -> Result<i64, DecimalError> {
    if scale > MAX_SCALE {
        return Err(DecimalError::Overflow(scale));
    }
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(DecimalError::Syntax);
    }
    let mut mantissa: i64 = 0;
    let mut fraction_digits: u8 = 0;
    let mut seen_point = false;
    let mut seen_digit = false;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                seen_digit = true;
                let d = i64::from(c - b'0');
                if seen_point {
                    if fraction_digits == scale {
                        if d != 0 {
                            return Err(DecimalError::TooPrecise(scale));
                        }
                        continue;
                    }
                    fraction_digits += 1;
                }
                mantissa = mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(d))
                    .ok_or(DecimalError::Overflow(scale))?;
            }
            b'.' if !seen_point => seen_point = true,
            _ => return Err(DecimalError::Syntax),
        }
    }
    if !seen_digit {
        return Err(DecimalError::Syntax);
    }
    let mantissa = mantissa
        .checked_mul(POW10[usize::from(scale - fraction_digits)])
        .ok_or(DecimalError::Overflow(scale))?;
    Ok(if negative { -mantissa } else { mantissa })
}

/// Appends the shortest exact decimal form of `mantissa / 10^scale` to `out`.
///
/// ```
/// use tickwire_engine::fixed;
/// let mut out = Vec::new();
/// fixed::write(&mut out, 6_700_050, 2);
/// assert_eq!(out, b"67000.5");
/// ```
pub fn write(out: &mut Vec<u8>, mantissa: i64, scale: u8) {
    let scale = scale.min(MAX_SCALE);
    if mantissa < 0 {
        out.push(b'-');
    }
    let magnitude = mantissa.unsigned_abs();
    let unit = POW10[usize::from(scale)] as u64;
    let whole = magnitude / unit;
    let mut frac = magnitude % unit;
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(whole).as_bytes());
    if frac == 0 {
        return;
    }
    let mut digits = scale;
    while frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    out.push(b'.');
    let text = buf.format(frac).as_bytes();
    for _ in text.len()..usize::from(digits) {
        out.push(b'0');
    }
    out.extend_from_slice(text);
}

/// Converts a mantissa to `f64`, for display and statistics only (never for the wire).
pub fn to_f64(mantissa: i64, scale: u8) -> f64 {
    mantissa as f64 / unit(scale) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(m: i64, scale: u8) -> String {
        let mut out = Vec::new();
        write(&mut out, m, scale);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_shortest_exact_form() {
        let cases = [
            (6_700_050, 2, "67000.5"),
            (6_700_000, 2, "67000"),
            (1, 8, "0.00000001"),
            (0, 8, "0"),
            (-125, 2, "-1.25"),
            (10_000, 4, "1"),
            (i64::MAX, 0, "9223372036854775807"),
            (i64::MIN, 18, "-9.223372036854775808"),
            (123_456_789, 18, "0.000000000123456789"),
        ];
        for (m, s, want) in cases {
            assert_eq!(show(m, s), want, "mantissa {m} scale {s}");
        }
    }

    #[test]
    fn parses_exactly_or_says_why_not() {
        assert_eq!(parse(b"67000.50000", 2), Ok(6_700_050));
        assert_eq!(parse(b"0.00000001", 8), Ok(1));
        assert_eq!(parse(b"-1.25", 2), Ok(-125));
        assert_eq!(parse(b"5", 3), Ok(5000));
        assert_eq!(parse(b"5.", 3), Ok(5000));
        assert_eq!(parse(b".5", 1), Ok(5));
        assert_eq!(parse(b"0.001", 2), Err(DecimalError::TooPrecise(2)));
        assert_eq!(parse(b"1e5", 2), Err(DecimalError::Syntax));
        assert_eq!(parse(b"", 2), Err(DecimalError::Syntax));
        assert_eq!(parse(b".", 2), Err(DecimalError::Syntax));
        assert_eq!(parse(b"1.2.3", 2), Err(DecimalError::Syntax));
        assert_eq!(
            parse(b"99999999999999999999", 0),
            Err(DecimalError::Overflow(0))
        );
    }

    #[test]
    fn round_trips() {
        for (m, s) in [(1, 0), (123_400, 3), (-99, 5), (42, 18)] {
            assert_eq!(parse(show(m, s).as_bytes(), s), Ok(m));
        }
    }
}
