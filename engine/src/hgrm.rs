//! The HdrHistogram percentile-distribution text format (`.hgrm`), as Java's
//! `Histogram.outputPercentileDistribution` writes it and HdrHistogram's plotters read it:
//! a `Value Percentile TotalCount 1/(1-Percentile)` table with five ticks per half
//! distance to 100%, then `#[Mean …]`, `#[Max …]`, `#[Buckets …]` footer lines.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Writes `h` as `.hgrm` text, dividing values by `unit_ratio` (1000 turns ns into µs).
pub fn write(h: &Histogram<u64>, unit_ratio: f64, out: &mut String) {
    let digits = usize::from(h.sigfig());
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / unit_ratio;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.digits$} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:>12.digits$} {q:>2.12} {total:>10}");
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / unit_ratio,
            h.stdev() / unit_ratio,
            h.max() as f64 / unit_ratio,
        )
    };
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {sub_buckets:>12}]",
        h.buckets()
    );
}

/// One row of a percentile distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    /// The value (in the file's unit).
    pub value: f64,
    /// The quantile, 0 to 1.
    pub quantile: f64,
    /// Samples at or below the value.
    pub total_count: u64,
}

/// Why `.hgrm` text could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// The `Value Percentile TotalCount …` header is missing.
    #[error("no `Value Percentile TotalCount` header: not a percentile distribution")]
    NoHeader,
    /// A row that is not three or four numbers.
    #[error("line {0}: expected value, percentile, total count")]
    BadRow(usize),
    /// Percentiles or counts that go down.
    #[error("line {0}: percentiles and counts must not decrease")]
    NotMonotone(usize),
}

/// Reads the rows of `.hgrm` text (the footer is skipped).
pub fn parse(text: &str) -> Result<Vec<Row>, ParseError> {
    let mut lines = text.lines().enumerate();
    lines
        .by_ref()
        .find(|(_, l)| {
            l.split_whitespace()
                .take(3)
                .eq(["Value", "Percentile", "TotalCount"])
        })
        .ok_or(ParseError::NoHeader)?;
    let mut rows: Vec<Row> = Vec::new();
    for (i, line) in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') {
            break;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if !(3..=4).contains(&f.len()) {
            return Err(ParseError::BadRow(i + 1));
        }
        let row = Row {
            value: f[0].parse().map_err(|_| ParseError::BadRow(i + 1))?,
            quantile: f[1].parse().map_err(|_| ParseError::BadRow(i + 1))?,
            total_count: f[2].parse().map_err(|_| ParseError::BadRow(i + 1))?,
        };
        if let Some(prev) = rows.last() {
            if row.quantile < prev.quantile
                || row.total_count < prev.total_count
                || row.value < prev.value
            {
                return Err(ParseError::NotMonotone(i + 1));
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::new_histogram;

    #[test]
    fn writes_the_java_layout_and_reads_it_back() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let mut text = String::new();
        write(&h, 1000.0, &mut text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "       1.000 0.000000000000          1           1.00"
        );
        assert!(
            text.contains("#[Mean    =      500.505, StdDeviation   =      288.676]"),
            "{text}"
        );
        assert!(
            text.contains("#[Max     =     1000.447, Total count    =         1000]"),
            "{text}"
        );
        assert!(text.contains("SubBuckets     =         2048]"));
        let rows = parse(&text).unwrap();
        let last = rows.last().unwrap();
        assert_eq!((last.quantile, last.total_count), (1.0, 1000));
        assert!(rows.len() > 50, "five ticks per half distance");
        let p50 = rows.iter().find(|r| r.quantile >= 0.5).unwrap();
        assert!((p50.value - 500.0).abs() < 1.0, "{p50:?}");
    }

    #[test]
    fn rejects_what_is_not_a_distribution() {
        assert_eq!(parse("hello"), Err(ParseError::NoHeader));
        let bad =
            "Value Percentile TotalCount 1/(1-Percentile)\n\n1.0 0.5 10 2.0\n0.5 0.6 11 2.5\n";
        assert_eq!(parse(bad), Err(ParseError::NotMonotone(4)));
        let empty = "Value Percentile TotalCount 1/(1-Percentile)\n\n#[Mean = 0]\n";
        assert_eq!(parse(empty), Ok(vec![]));
    }
}
