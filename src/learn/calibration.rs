//! Calibrated probabilities: temperature scaling (Guo et al., 2017) fitted
//! only on what the person labelled, and the measures that say how far the
//! calibrated probabilities can be trusted.
//!
//! The temperature T rescales a model's logits, p_T = softmax(z / T); on
//! probabilities that is p_T ∝ p^(1/T), so the predicted label never
//! changes, only how sure the model says it is. It is fitted by maximum
//! likelihood on cross-validated predictions of the labelled rows (each
//! row predicted by a head trained without it), with a weak prior that
//! pulls log T towards 0: with few labels the fit stays near T = 1 instead
//! of jumping to an extreme on a handful of rows.
//!
//! Ranking keeps the model's own probabilities (the strategies were
//! measured on them); everything shown, stored and exported is calibrated.

/// Fewer labels than this: no fit, T = 1.
pub const MIN_LABELS: usize = 10;
/// Folds of the cross-validation.
pub const FOLDS: usize = 10;
/// Standard deviation of the prior on ln T (a weak pull towards T = 1).
const PRIOR_SD: f64 = 1.0;
/// The range searched for ln T.
const LN_T_RANGE: (f64, f64) = (-3.0, 3.0);

/// Applies temperature `t` to rows of `k` probabilities, in place (it
/// lives with the head, which applies it, so that `model` needs nothing of
/// `learn`).
pub use crate::model::head::apply_temperature as apply;

/// Negative log-likelihood of `gold` under `probs` at inverse temperature
/// `beta` (sum over rows).
fn nll(probs: &[f32], k: usize, gold: &[u32], weights: &[f64], beta: f64) -> f64 {
    let mut total = 0.0;
    for ((row, &y), &w) in probs.chunks(k).zip(gold).zip(weights) {
        let logs: Vec<f64> = row.iter().map(|&p| (p as f64).max(1e-30).ln() * beta).collect();
        let m = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + logs.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
        total += w * (lse - logs[y as usize]);
    }
    total
}

/// The temperature that makes `probs` (rows of `k`, each predicted without
/// its own label) best explain `gold`: maximum a posteriori over ln T with
/// a normal prior around 0. 1 when there are fewer than `MIN_LABELS` rows.
pub fn fit_temperature(probs: &[f32], k: usize, gold: &[u32]) -> f32 {
    fit_weighted(probs, k, gold, &vec![1.0; gold.len()])
}

/// `fit_temperature` with a weight per row (weights with mean 1 keep the
/// prior's strength).
pub fn fit_weighted(probs: &[f32], k: usize, gold: &[u32], weights: &[f64]) -> f32 {
    if k < 2 || gold.len() < MIN_LABELS || probs.len() != gold.len() * k || weights.len() != gold.len() {
        return 1.0;
    }
    let f = |ln_t: f64| nll(probs, k, gold, weights, (-ln_t).exp()) + ln_t * ln_t / (2.0 * PRIOR_SD * PRIOR_SD);
    // The NLL is convex in 1/T, and so unimodal in ln T: golden-section search.
    let (mut a, mut b) = LN_T_RANGE;
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..60 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp() as f32
}

/// Expected calibration error with `bins` equal-width bins of the top
/// probability: the mean over rows of |accuracy - confidence| in their bin.
pub fn ece(top_prob: &[f32], right: &[bool], bins: usize) -> f64 {
    let n = top_prob.len();
    if n == 0 || bins == 0 {
        return 0.0;
    }
    let mut conf = vec![0f64; bins];
    let mut acc = vec![0f64; bins];
    let mut count = vec![0usize; bins];
    for (&p, &r) in top_prob.iter().zip(right) {
        let b = ((p as f64 * bins as f64) as usize).min(bins - 1);
        conf[b] += p as f64;
        acc[b] += r as u8 as f64;
        count[b] += 1;
    }
    (0..bins).filter(|&b| count[b] > 0).map(|b| (acc[b] - conf[b]).abs()).sum::<f64>() / n as f64
}

/// The bins of an ECE, as the tests and docs use them.
pub const ECE_BINS: usize = 15;

/// What the calibrated probabilities say about the rows the person has not
/// labelled: the expected accuracy of the model's labels there, and per
/// confidence threshold how many rows reach it and how many of those are
/// expected right.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Estimate {
    /// Unlabelled rows.
    pub rows: usize,
    /// Expected accuracy of the model's labels on them (mean top probability).
    pub accuracy: f64,
    /// (threshold, rows at or above it, their expected accuracy).
    pub at: Vec<(f32, usize, f64)>,
}

/// Thresholds the panel and export report.
pub const THRESHOLDS: [f32; 3] = [0.9, 0.8, 0.5];

impl Estimate {
    /// From the calibrated top probability of every row, and which rows count.
    pub fn of(top_prob: &[f32], unlabelled: impl Fn(usize) -> bool) -> Estimate {
        let mut rows = 0;
        let mut sum = 0f64;
        let mut at: Vec<(f32, usize, f64)> = THRESHOLDS.iter().map(|&t| (t, 0, 0.0)).collect();
        for (i, &p) in top_prob.iter().enumerate() {
            if !unlabelled(i) {
                continue;
            }
            rows += 1;
            sum += p as f64;
            for a in at.iter_mut() {
                if p >= a.0 {
                    a.1 += 1;
                    a.2 += p as f64;
                }
            }
        }
        for a in at.iter_mut() {
            a.2 = if a.1 == 0 { 0.0 } else { a.2 / a.1 as f64 };
        }
        Estimate { rows, accuracy: if rows == 0 { 0.0 } else { sum / rows as f64 }, at }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_keeps_the_argmax_and_flattens() {
        let mut p = vec![0.7, 0.2, 0.1, 0.1, 0.1, 0.8];
        apply(&mut p, 3, 2.0);
        assert!(p[0] > p[1] && p[1] > p[2] && p[5] > p[3]);
        assert!(p[0] < 0.7 && p[5] < 0.8);
        assert!((p[0..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // p^(1/2) normalised.
        let s = 0.7f32.sqrt() + 0.2f32.sqrt() + 0.1f32.sqrt();
        assert!((p[0] - 0.7f32.sqrt() / s).abs() < 1e-6);
    }

    /// A model that says 0.95 on rows it gets right 70% of the time is
    /// over-confident: the fitted temperature is above 1 and brings its
    /// confidence near 0.7; an under-confident one gets a temperature below 1.
    #[test]
    fn over_confident_gets_a_temperature_above_one() {
        let k = 4;
        let mut probs = Vec::new();
        let mut gold = Vec::new();
        for i in 0..200 {
            probs.extend_from_slice(&[0.95, 0.02, 0.02, 0.01]);
            gold.push(if i % 10 < 7 { 0 } else { 1 + (i % 3) as u32 });
        }
        let t = fit_temperature(&probs, k, &gold);
        assert!(t > 1.5, "{t}");
        let mut c = probs[..4].to_vec();
        apply(&mut c, k, t);
        assert!((c[0] - 0.7).abs() < 0.05, "{c:?}");
        // Under-confident: says 0.4 on rows it always gets right.
        let probs: Vec<f32> = (0..100).flat_map(|_| [0.4, 0.2, 0.2, 0.2]).collect();
        let gold = vec![0u32; 100];
        assert!(fit_temperature(&probs, k, &gold) < 0.7);
        // Too few labels: no fit.
        assert_eq!(fit_temperature(&probs[..4 * 5], k, &gold[..5]), 1.0);
    }

    #[test]
    fn ece_by_hand() {
        // Two bins used: 0.95 (2 rows, 1 right) and 0.55 (2 rows, 2 right).
        let e = ece(&[0.95, 0.95, 0.55, 0.55], &[true, false, true, true], 15);
        assert!((e - (2.0 * 0.45 + 2.0 * 0.45) / 4.0).abs() < 1e-6, "{e}");
        assert!(ece(&[0.8; 10], &[true, true, true, true, true, true, true, true, false, false], 15) < 1e-6);
    }

    #[test]
    fn estimate_counts_thresholds() {
        let e = Estimate::of(&[0.95, 0.85, 0.6, 0.99], |i| i != 3);
        assert_eq!(e.rows, 3);
        assert!((e.accuracy - 0.8).abs() < 1e-6);
        assert_eq!(e.at[0].1, 1);
        assert_eq!(e.at[1].1, 2);
        assert!((e.at[1].2 - 0.9).abs() < 1e-6);
        assert_eq!(e.at[2].1, 3);
    }
}
