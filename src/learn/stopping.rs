//! When more labels stop paying: stabilizing predictions (Bloodgood and
//! Vijay-Shanker, 2009; small-text's `KappaAverage`). After each retrain
//! the model's labels on every pool row are set against the previous
//! model's (Cohen's kappa); when the agreement stays at or above a
//! threshold for a window of iterations, the model has stopped changing
//! its mind about the rest, and more labels are unlikely to move it. The
//! signal only informs: the person may go on.
//!
//! The window is the paper's (3 iterations); the threshold is lower than
//! its 0.99, chosen by measurement (`simulate`, docs/RESULTS.md, "When to
//! stop"): the head is retrained from its prior on every batch and
//! self-trains, so a few percent of the pool's labels move each time even
//! when accuracy has levelled off, and 0.99 fired late or never.
//!
//! The person's labels count like any other row (the
//! model predicts them too): the comparison is between two models on one
//! fixed set, which is what the criterion asks for.

/// The agreement an iteration must reach (Cohen's kappa with the last).
pub const THRESHOLD: f64 = 0.97;
/// How many iterations in a row.
pub const WINDOW: usize = 3;
/// Labels before the signal can fire: a model on a handful of labels can
/// agree with itself and still be far from done.
pub const MIN_LABELS: usize = 30;

/// Cohen's kappa between two labellings of the same rows over `k` classes:
/// agreement beyond what the two label frequencies would give by chance.
/// 1 when both are constant and equal, 0 for no rows.
pub fn kappa(a: &[u32], b: &[u32], k: usize) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 || k == 0 {
        return 0.0;
    }
    let mut fa = vec![0f64; k];
    let mut fb = vec![0f64; k];
    let mut same = 0usize;
    for (&x, &y) in a.iter().zip(b) {
        fa[(x as usize).min(k - 1)] += 1.0;
        fb[(y as usize).min(k - 1)] += 1.0;
        same += (x == y) as usize;
    }
    let nf = n as f64;
    let po = same as f64 / nf;
    let pe: f64 = fa.iter().zip(&fb).map(|(x, y)| x * y).sum::<f64>() / (nf * nf);
    if (1.0 - pe).abs() < 1e-12 {
        // Both constant: agreement is total exactly when they agree.
        return if same == n { 1.0 } else { 0.0 };
    }
    (po - pe) / (1.0 - pe)
}

/// Whether the signal fires after a run of iterations: `history` holds,
/// oldest first, each iteration's label count and its agreement with the
/// one before (None for the first, or when there was none to compare).
pub fn fired(history: &[(usize, Option<f64>)]) -> bool {
    fired_with(history, THRESHOLD, WINDOW)
}

/// `fired` at another threshold and window (to measure the choice).
pub fn fired_with(history: &[(usize, Option<f64>)], threshold: f64, window: usize) -> bool {
    if window == 0 || history.len() < window {
        return false;
    }
    let last = &history[history.len() - window..];
    last[0].0 >= MIN_LABELS && last.iter().all(|&(_, a)| a.is_some_and(|a| a >= threshold))
}

/// The label count at which the signal first fires along a curve
/// (oldest first), if it does.
pub fn first_firing(history: &[(usize, Option<f64>)], threshold: f64, window: usize) -> Option<usize> {
    (1..=history.len()).find(|&end| fired_with(&history[..end], threshold, window)).map(|end| history[end - 1].0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kappa_by_hand() {
        // 10 rows, 2 classes: 8 agree; a has 5/5, b has 5/5 -> pe 0.5, po 0.8 -> 0.6.
        let a = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1];
        let b = [0, 0, 0, 0, 1, 0, 1, 1, 1, 1];
        assert!((kappa(&a, &b, 2) - 0.6).abs() < 1e-9);
        assert_eq!(kappa(&a, &a, 2), 1.0);
        assert_eq!(kappa(&[1, 1], &[1, 1], 3), 1.0);
        assert_eq!(kappa(&[1, 1], &[2, 2], 3), 0.0);
        assert_eq!(kappa(&[], &[], 3), 0.0);
    }

    #[test]
    fn fires_after_a_stable_window_only() {
        let h = |v: &[(usize, Option<f64>)]| fired(v);
        let stable = [(40, Some(0.975)), (50, Some(0.992)), (60, Some(0.999))];
        assert!(h(&stable));
        // One wobble in the window: not yet.
        assert!(!h(&[(40, Some(0.995)), (50, Some(0.96)), (60, Some(0.999))]));
        // Too few iterations, or a missing comparison.
        assert!(!h(&stable[1..]));
        assert!(!h(&[(40, None), (50, Some(0.995)), (60, Some(0.999))]));
        // Stable, but on too few labels.
        assert!(!h(&[(10, Some(1.0)), (20, Some(1.0)), (29, Some(1.0))]));
        let curve = [(10, None), (20, Some(0.8)), (30, Some(0.995)), (40, Some(0.993)), (50, Some(0.999)), (60, Some(0.999))];
        assert_eq!(first_firing(&curve, 0.99, 3), Some(50));
        assert_eq!(first_firing(&curve, 0.999, 2), Some(60));
        assert_eq!(first_firing(&curve[..4], THRESHOLD, WINDOW), None);
    }
}
