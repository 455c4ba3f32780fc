//! Small statistics for benchmark reports: medians over repetitions and ratios between
//! configurations. Pure functions; a missing or non-finite value is skipped, never a panic.

/// The median of the finite values (mean of the two middle ones for an even count);
/// `None` when there is none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v.get(mid).copied()
    } else {
        Some((v[mid - 1] + v[mid]) / 2.0)
    }
}

/// The median of the present values of an iterator of options.
pub fn median_of<I: IntoIterator<Item = Option<f64>>>(values: I) -> Option<f64> {
    let v: Vec<f64> = values.into_iter().flatten().collect();
    median(&v)
}

/// `a / b`, or `None` when either is missing or `b` is zero or not finite.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 && b.is_finite() && a.is_finite() => Some(a / b),
        _ => None,
    }
}

/// Formats an optional number with `digits` decimals, `-` when absent.
pub fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) => format!("{x:.digits$}"),
        None => "-".to_string(),
    }
}

/// Formats a ratio as `0.93×`, `-` when absent.
pub fn fmt_ratio(v: Option<f64>) -> String {
    match v {
        Some(x) => format!("{x:.2}×"),
        None => "-".to_string(),
    }
}

/// `p`-th percentile (nearest rank) of the finite values; `None` when there is none.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    percentile_sorted(&v, p)
}

/// [`percentile`] of values already sorted (ascending, all finite), without a copy.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(clippy::cast_precision_loss, reason = "sample counts are small")]
    let n = sorted.len() as f64;
    let rank = (p / 100.0 * n).ceil().max(1.0);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "rank is in 1..=n"
    )]
    let idx = (rank as usize).min(sorted.len()) - 1;
    sorted.get(idx).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0, f64::INFINITY]), Some(5.0));
        assert_eq!(
            median_of([Some(1.0), None, Some(9.0), Some(4.0)]),
            Some(4.0)
        );
        assert_eq!(median_of([None, None]), None);
    }

    #[test]
    fn ratio_guards_zero_and_missing() {
        assert_eq!(ratio(Some(6.0), Some(3.0)), Some(2.0));
        assert_eq!(ratio(Some(6.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(3.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
        assert_eq!(fmt_ratio(ratio(Some(1.0), Some(4.0))), "0.25×");
        assert_eq!(fmt_opt(None, 2), "-");
        assert_eq!(fmt_opt(Some(1.234), 1), "1.2");
    }

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[f64::NAN, 2.0, 1.0], 50.0), Some(1.0));
    }
}
