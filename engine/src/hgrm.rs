//! HdrHistogram's percentile distribution text (`.hgrm`), as the Java implementation's
//! `AbstractHistogram.outputPercentileDistribution(stream, ticksPerHalfDistance,
//! outputValueUnitScalingRatio)` prints it and HdrHistogram's plotter reads it:
//!
//! ```text
//!        Value     Percentile TotalCount 1/(1-Percentile)
//!
//!       12.345 0.000000000000          1           1.00
//!          ...
//!       99.999 1.000000000000       5000
//! #[Mean    =       23.456, StdDeviation   =        7.890]
//! #[Max     =       99.999, Total count    =         5000]
//! #[Buckets =           26, SubBuckets     =         2048]
//! ```
//!
//! Values are divided by the scaling ratio (here 1000: recorded in ns, written in µs) and
//! printed with as many decimals as the histogram has significant digits. Percentile
//! levels follow Java's `PercentileIterator` step by step (ticks per half distance to
//! 100%, in percent, the same floating-point operations), and numbers are rounded the way
//! Java's `Formatter` rounds them, so the same histogram gives the same bytes: the tests
//! compare against files printed by the Java implementation itself
//! (`engine/tests/fixtures/JavaHgrm.java`). [`parse`] reads the format back.

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Writes `h`'s percentile distribution in the `.hgrm` format.
///
/// ```
/// let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
/// for v in 1..=100u64 { h.record(v * 1000).unwrap(); }
/// let text = tickwire_engine::hgrm::percentile_distribution(&h, 5, 1000.0);
/// let parsed = tickwire_engine::hgrm::parse(&text).unwrap();
/// assert_eq!(parsed.total_count, 100);
/// assert_eq!(parsed.rows.last().unwrap().percentile, 1.0);
/// ```
pub fn percentile_distribution(
    h: &Histogram<u64>,
    ticks_per_half_distance: u32,
    unit_scaling_ratio: f64,
) -> String {
    let digits = usize::from(h.sigfig());
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let total = h.len();
    let ticks = i64::from(ticks_per_half_distance.max(1));
    let mut level = 0.0_f64; // percent, as in Java
    let mut running = 0u64;
    let mut last_value = 0u64;
    for v in h.iter_recorded() {
        let (value, count) = (v.value_iterated_to(), v.count_at_value());
        running += count;
        last_value = value;
        loop {
            let current = 100.0 * running as f64 / total as f64;
            if current < level {
                break;
            }
            let _ = writeln!(
                out,
                "{:>12} {:>2} {:10} {:>14}",
                java_fixed(value as f64 / unit_scaling_ratio, digits),
                java_fixed(level / 100.0, 12),
                running,
                java_fixed(1.0 / (1.0 - level / 100.0), 2)
            );
            // PercentileIterator.incrementIterationLevel.
            let halvings = ((100.0 / (100.0 - level)).ln() / 2.0_f64.ln()) as i64 + 1;
            let reporting_ticks = ticks * 2.0_f64.powi(halvings as i32) as i64;
            level += 100.0 / reporting_ticks as f64;
            // At the last recorded value Java takes one step, then jumps to 100%.
            if running == total {
                break;
            }
        }
    }
    if total > 0 {
        let _ = writeln!(
            out,
            "{:>12} {:>2} {:10}",
            java_fixed(last_value as f64 / unit_scaling_ratio, digits),
            java_fixed(1.0, 12),
            total
        );
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12}, StdDeviation   = {:>12}]",
        java_fixed(h.mean() / unit_scaling_ratio, digits),
        java_fixed(h.stdev() / unit_scaling_ratio, digits)
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12}, Total count    = {:12}]",
        java_fixed(h.max() as f64 / unit_scaling_ratio, digits),
        total
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_bucket_count(h.sigfig())
    );
    out
}

/// `x` with `decimals` digits after the point, as Java's `Formatter` prints `%.Nf`: it
/// rounds, half up, the shortest decimal that reads back as `x` (the digits of
/// `Double.toString`), where Rust's `{:.N}` rounds the exact binary value half to even.
/// The two differ when that shortest decimal ends in a 5 just past the last digit
/// (`0.9997802734375` → Java `0.999780273438`, Rust `0.999780273437`).
fn java_fixed(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    // Shortest round-trip digits d0 d1 ... with x = 0.d0d1... × 10^point.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: Vec<u8> = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    let mut point = exp.parse::<i64>().unwrap_or(0) + 1;
    let keep = point + decimals as i64; // digits from 10^(point-1) down to 10^-decimals
    let mut kept: Vec<u8> = (0..keep.max(0) as usize)
        .map(|i| digits.get(i).copied().unwrap_or(0))
        .collect();
    let round_up = keep >= 0 && digits.get(keep as usize).is_some_and(|d| *d >= 5);
    if round_up {
        let mut i = kept.len();
        loop {
            if i == 0 {
                kept.insert(0, 1);
                point += 1;
                break;
            }
            i -= 1;
            if kept[i] == 9 {
                kept[i] = 0;
            } else {
                kept[i] += 1;
                break;
            }
        }
    } else if keep < 0 {
        // Far below the last place: zero.
        kept = vec![0; decimals];
        point = 0;
    }
    let text = |d: &[u8]| d.iter().map(|d| char::from(b'0' + d)).collect::<String>();
    let (int, frac) = if point <= 0 {
        ("0".to_owned(), "0".repeat((-point) as usize) + &text(&kept))
    } else {
        let p = point as usize;
        (text(&kept[..p]), text(&kept[p..]))
    };
    let sign = if x < 0.0 { "-" } else { "" };
    if decimals == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// Sub-buckets per bucket for `sigfig` significant digits (Java's `subBucketCount`).
fn sub_bucket_count(sigfig: u8) -> u64 {
    let largest_single_unit = 2.0 * 10f64.powi(i32::from(sigfig));
    let magnitude = largest_single_unit.log2().ceil() as u32;
    let half_magnitude = magnitude.max(1) - 1;
    1 << (half_magnitude + 1)
}

/// One row of a parsed distribution.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Value (scaled).
    pub value: f64,
    /// Percentile level, 0..=1.
    pub percentile: f64,
    /// Count of values up to this one.
    pub total_count: u64,
}

/// A parsed `.hgrm` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// Rows in order.
    pub rows: Vec<Row>,
    /// `Mean` of the footer.
    pub mean: f64,
    /// `Max` of the footer.
    pub max: f64,
    /// `Total count` of the footer.
    pub total_count: u64,
}

/// Text that is not an `.hgrm` percentile distribution, and where it goes wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an HdrHistogram percentile distribution: {0}")]
pub struct HgrmError(pub String);

/// Parses and checks a distribution: the header line, rows with non-decreasing values,
/// percentiles and counts (the last at percentile 1 and the total count), and the three
/// footer lines.
pub fn parse(text: &str) -> Result<Parsed, HgrmError> {
    parse_rows(text).map_err(HgrmError)
}

fn parse_rows(text: &str) -> Result<Parsed, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    if header != ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"] {
        return Err(format!("bad header {header:?}"));
    }
    if lines.next() != Some("") {
        return Err("no blank line after the header".into());
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut footer = Vec::new();
    for line in lines {
        if let Some(f) = line.strip_prefix("#[") {
            footer.push(f.trim_end_matches(']').to_owned());
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        if !(3..=4).contains(&cols.len()) || !footer.is_empty() {
            return Err(format!("bad row {line:?}"));
        }
        let num = |s: &str| s.parse::<f64>().map_err(|e| format!("{line:?}: {e}"));
        let row = Row {
            value: num(cols[0])?,
            percentile: num(cols[1])?,
            total_count: cols[2].parse().map_err(|e| format!("{line:?}: {e}"))?,
        };
        if let Some(prev) = rows.last() {
            if row.value < prev.value
                || row.percentile < prev.percentile
                || row.total_count < prev.total_count
            {
                return Err(format!("not monotone at {line:?}"));
            }
        }
        if (cols.len() == 3) != (row.percentile == 1.0) {
            return Err(format!(
                "only the 100% row lacks 1/(1-Percentile): {line:?}"
            ));
        }
        rows.push(row);
    }
    let field = |line: usize, name: &str| -> Result<String, String> {
        let f = footer.get(line).ok_or("missing footer line")?;
        f.split(',')
            .find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == name).then(|| v.trim().to_owned())
            })
            .ok_or_else(|| format!("footer has no {name}: {f:?}"))
    };
    if footer.len() != 3 {
        return Err(format!("expected 3 footer lines, got {footer:?}"));
    }
    let parsed = Parsed {
        mean: field(0, "Mean")?
            .parse()
            .map_err(|e| format!("Mean: {e}"))?,
        max: field(1, "Max")?.parse().map_err(|e| format!("Max: {e}"))?,
        total_count: field(1, "Total count")?
            .parse()
            .map_err(|e| format!("Total count: {e}"))?,
        rows,
    };
    field(2, "Buckets")?;
    field(2, "SubBuckets")?;
    if let Some(last) = parsed.rows.last() {
        if last.percentile != 1.0 || last.total_count != parsed.total_count {
            return Err("the last row is not 100% of the total count".into());
        }
    } else if parsed.total_count != 0 {
        return Err("no rows for a non-empty histogram".into());
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in values {
            h.record(*v).unwrap();
        }
        h
    }

    // Printed by HdrHistogram's Java implementation: see engine/tests/fixtures/JavaHgrm.java.
    const JAVA_1_TO_10: &str = include_str!("../tests/fixtures/java-1-to-10.txt");
    const JAVA_10K_US: &str = include_str!("../tests/fixtures/java-10k-squares-us.txt");
    const JAVA_EMPTY_US: &str = include_str!("../tests/fixtures/java-empty-us.txt");

    #[test]
    fn same_bytes_as_java_for_values_1_to_10() {
        let h = hist(&(1..=10).collect::<Vec<_>>());
        assert_eq!(percentile_distribution(&h, 5, 1.0), JAVA_1_TO_10);
    }

    #[test]
    fn same_bytes_as_java_for_10k_values_scaled_to_microseconds() {
        let values: Vec<u64> = (0..10_000).map(|i| 1_000 + i * i).collect();
        let text = percentile_distribution(&hist(&values), 5, 1000.0);
        assert_eq!(text, JAVA_10K_US);
        let p = parse(&text).unwrap();
        assert_eq!(p.total_count, 10_000);
        assert_eq!(p.rows[0].value, 1.0);
    }

    #[test]
    fn same_bytes_as_java_for_an_empty_histogram() {
        let h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        let text = percentile_distribution(&h, 5, 1000.0);
        assert_eq!(text, JAVA_EMPTY_US);
        let p = parse(&text).unwrap();
        assert!(p.rows.is_empty());
        assert_eq!((p.total_count, p.max), (0, 0.0));
    }

    #[test]
    fn java_style_rounding() {
        for (x, decimals, want) in [
            (0.9997802734375, 12, "0.999780273438"),
            (0.0, 12, "0.000000000000"),
            (1.0, 12, "1.000000000000"),
            (99942.399, 3, "99942.399"),
            (9.9996, 3, "10.000"),
            (0.0004, 3, "0.000"),
            (0.0005, 3, "0.001"),
            (1e-20, 3, "0.000"),
            (4551.111111, 2, "4551.11"),
            (2.5, 0, "3"),
            (123456789012.5, 2, "123456789012.50"),
        ] {
            assert_eq!(java_fixed(x, decimals), want, "{x} {decimals}");
        }
    }

    #[test]
    fn parse_rejects_broken_files() {
        let good = percentile_distribution(&hist(&[5, 6, 7]), 5, 1.0);
        assert!(parse(&good.replacen("Value", "Valeur", 1)).is_err());
        assert!(parse(&good.replace("#[Buckets", "#[Nope")).is_err());
        let lines: Vec<&str> = good.lines().collect();
        let mut swapped = lines.clone();
        swapped.swap(2, 4);
        assert!(parse(&swapped.join("\n")).is_err());
    }
}
