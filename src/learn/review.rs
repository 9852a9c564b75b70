//! Review of the person's own labels, in the spirit of confident learning
//! (Northcutt et al., cleanlab): each label is set against the prediction
//! of a model trained without it (the cross-validated predictions that the
//! calibration fits on), and the labels that model confidently disputes
//! come first.
//!
//! A label is disputed when the model without it puts another class above
//! the given one and that class's probability reaches the class's own
//! threshold: the mean probability the models give that class on the rows
//! labelled with it (cleanlab's per-class threshold), so a class the model
//! is always unsure of still counts. Disputed labels are ranked by how much
//! more probability the other class gets than the given label.

/// A label the model (trained without it) disputes.
#[derive(Debug, Clone, PartialEq)]
pub struct Suspect {
    /// Index into the labels given to `suspects`.
    pub at: usize,
    /// The class the model puts first, and its probability.
    pub model_label: u32,
    pub model_prob: f32,
    /// The probability of the given label.
    pub given_prob: f32,
}

impl Suspect {
    pub fn score(&self) -> f32 {
        self.model_prob - self.given_prob
    }
}

/// The disputed labels among `given` (one per row of `cv_probs`, rows of
/// `k` probabilities each predicted without its own label), most disputed
/// first.
pub fn suspects(cv_probs: &[f32], k: usize, given: &[u32]) -> Vec<Suspect> {
    if k == 0 || cv_probs.len() != given.len() * k {
        return Vec::new();
    }
    // Per-class threshold: mean probability of class j on rows labelled j.
    let mut sum = vec![0f64; k];
    let mut n = vec![0usize; k];
    for (row, &y) in cv_probs.chunks(k).zip(given) {
        sum[y as usize] += row[y as usize] as f64;
        n[y as usize] += 1;
    }
    let thr: Vec<f32> = (0..k).map(|j| if n[j] == 0 { 0.5 } else { (sum[j] / n[j] as f64) as f32 }).collect();
    let mut out: Vec<Suspect> = Vec::new();
    for (at, (row, &y)) in cv_probs.chunks(k).zip(given).enumerate() {
        let (j, &p) = row.iter().enumerate().filter(|&(j, _)| j != y as usize).fold((0, &f32::MIN), |a, b| if b.1 > a.1 { b } else { a });
        let py = row[y as usize];
        if p > py && p >= thr[j] {
            out.push(Suspect { at, model_label: j as u32, model_prob: p, given_prob: py });
        }
    }
    out.sort_by(|a, b| b.score().partial_cmp(&a.score()).unwrap_or(std::cmp::Ordering::Equal).then(a.at.cmp(&b.at)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_wrong_label_comes_first() {
        // Three classes; rows 0-5 agree with their labels, row 6 is labelled 0
        // but the model is sure it is 2, row 7 mildly disputes its label.
        let probs = vec![
            0.8, 0.1, 0.1, //
            0.7, 0.2, 0.1, //
            0.1, 0.8, 0.1, //
            0.2, 0.7, 0.1, //
            0.1, 0.1, 0.8, //
            0.1, 0.2, 0.7, //
            0.05, 0.05, 0.9, //
            0.4, 0.45, 0.15, //
        ];
        let given = vec![0, 0, 1, 1, 2, 2, 0, 0];
        let s = suspects(&probs, 3, &given);
        assert_eq!(s[0].at, 6);
        assert_eq!(s[0].model_label, 2);
        // Row 7: class 1 at 0.45 is below class 1's threshold (mean 0.64 on
        // rows labelled 1), so it is not disputed.
        assert!(s.iter().all(|x| x.at != 7), "{s:?}");
        assert_eq!(s.len(), 1);
    }
}
