//! Review of the person's own labels, in the spirit of confident learning
//! (Northcutt et al., cleanlab): each label is set against the prediction
//! of a model trained without it (the cross-validated predictions that the
//! calibration fits on), and the labels that model finds least likely come
//! first: ranked by the probability it gives the label the person gave
//! (cleanlab's "self-confidence" ranking). A slip (a random other label)
//! gets almost no probability from a model that never saw it, whatever
//! the class; a right label of a class with one or two labels still gets
//! the share the label prompt and its neighbours give it.
//!
//! Measured with a simulated person who slips 5% of the time
//! (`simulate --noise 0.05`, docs/RESULTS.md "Review"): on banking77 with
//! the head alone, 3 seeds, 25 slips among 450 labels, the top 10% of each
//! run's ranking held 21 of them, against 6 for the ranking this replaced
//! (only labels the model put another class above a per-class threshold
//! for, by margin).

/// How many labels the review keeps per iteration, least likely first.
pub const KEEP: usize = 200;

/// A label as the model trained without it sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Suspect {
    /// Index into the labels given to `suspects`.
    pub at: usize,
    /// The class the model puts first (the given one when it agrees), and
    /// its probability.
    pub model_label: u32,
    pub model_prob: f32,
    /// The probability of the given label.
    pub given_prob: f32,
}

impl Suspect {
    /// The model trained without the row puts another label first.
    pub fn disputed(&self, given: u32) -> bool {
        self.model_label != given
    }
}

/// The labels `given` (one per row of `cv_probs`, rows of `k`
/// probabilities each predicted without its own label), least likely
/// first under the model trained without them; at most `KEEP`.
pub fn suspects(cv_probs: &[f32], k: usize, given: &[u32]) -> Vec<Suspect> {
    if k == 0 || cv_probs.len() != given.len() * k {
        return Vec::new();
    }
    let mut out: Vec<Suspect> = cv_probs
        .chunks(k)
        .zip(given)
        .enumerate()
        .map(|(at, (row, &y))| {
            let (j, &p) = row.iter().enumerate().fold((0, &f32::MIN), |a, b| if b.1 > a.1 { b } else { a });
            Suspect { at, model_label: j as u32, model_prob: p, given_prob: row[y as usize] }
        })
        .collect();
    out.sort_by(|a, b| a.given_prob.partial_cmp(&b.given_prob).unwrap_or(std::cmp::Ordering::Equal).then(a.at.cmp(&b.at)));
    out.truncate(KEEP);
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
        assert_eq!(s.len(), 8, "every label, ranked");
        assert_eq!(s[0].at, 6);
        assert_eq!(s[0].model_label, 2);
        assert!(s[0].disputed(given[6]));
        // Then the mild dispute, then the agreeing labels, least sure first.
        assert_eq!(s[1].at, 7);
        assert!(s[1].disputed(given[7]));
        let rest: Vec<usize> = s[2..].iter().map(|x| x.at).collect();
        assert_eq!(rest, vec![1, 3, 5, 0, 2, 4]);
        assert!(s[2..].iter().all(|x| !x.disputed(given[x.at])));
    }
}
