//! Agreement between annotators on the rows sent to two of them
//! (`--overlap`): raw agreement and Cohen's kappa per pair.

use std::collections::{BTreeMap, HashMap};

use super::stopping::kappa;
use crate::store::Label;

/// How two annotators agree on the overlap rows they both labelled.
#[derive(Debug, Clone, PartialEq)]
pub struct PairAgreement {
    pub a: String,
    pub b: String,
    /// Rows both labelled.
    pub rows: usize,
    /// The share of those with the same label.
    pub raw: f64,
    /// Cohen's kappa over those rows (`stopping::kappa`: 1 when both gave
    /// one and the same label to every row).
    pub kappa: f64,
}

/// Agreement per pair of annotators on the overlap rows (each annotator's
/// label in use), pairs with rows in common only, most rows first.
pub fn agreement(overlap_labels: &[Label], k: usize) -> Vec<PairAgreement> {
    let mut by_ann: BTreeMap<&str, HashMap<i64, u32>> = BTreeMap::new();
    for l in overlap_labels {
        if let Some(a) = l.annotator.as_deref() {
            by_ann.entry(a).or_default().insert(l.row_id, l.label);
        }
    }
    let names: Vec<&str> = by_ann.keys().copied().collect();
    let mut out = Vec::new();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            let (la, lb) = (&by_ann[a], &by_ann[b]);
            let mut rows: Vec<i64> = la.keys().filter(|r| lb.contains_key(r)).copied().collect();
            if rows.is_empty() {
                continue;
            }
            rows.sort_unstable();
            let x: Vec<u32> = rows.iter().map(|r| la[r]).collect();
            let y: Vec<u32> = rows.iter().map(|r| lb[r]).collect();
            let same = x.iter().zip(&y).filter(|(p, q)| p == q).count();
            out.push(PairAgreement {
                a: a.to_string(),
                b: b.to_string(),
                rows: rows.len(),
                raw: same as f64 / rows.len() as f64,
                kappa: kappa(&x, &y, k),
            });
        }
    }
    out.sort_by(|p, q| q.rows.cmp(&p.rows).then_with(|| (&p.a, &p.b).cmp(&(&q.a, &q.b))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Source;

    fn label(row: i64, who: &str, label: u32) -> Label {
        Label { row_id: row, label, source: Source::Person, iteration: 0, predicted: None, annotator: Some(who.into()), seq: row }
    }

    /// The textbook case (Wikipedia, "Cohen's kappa"): 50 rows, yes/no; both
    /// yes on 20, both no on 15, a yes and b no on 5, a no and b yes on 10:
    /// agreement 0.7, chance 0.5, kappa 0.4.
    #[test]
    fn kappa_of_the_textbook_table() {
        let mut v = Vec::new();
        let cells = [(20, 0, 0), (15, 1, 1), (5, 0, 1), (10, 1, 0)];
        let mut row = 0;
        for (n, a, b) in cells {
            for _ in 0..n {
                row += 1;
                v.push(label(row, "a", a));
                v.push(label(row, "b", b));
            }
        }
        // A third annotator on a few rows only, and a row only `a` labelled.
        v.push(label(1, "c", 0));
        v.push(label(2, "c", 1));
        v.push(label(999, "a", 1));
        let p = agreement(&v, 2);
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].a.as_str(), p[0].b.as_str(), p[0].rows), ("a", "b", 50));
        assert!((p[0].raw - 0.7).abs() < 1e-12, "{:?}", p[0]);
        assert!((p[0].kappa - 0.4).abs() < 1e-12, "{:?}", p[0]);
        // a and c: rows 1 and 2, a said yes on both, c yes then no.
        let ac = p.iter().find(|x| x.a == "a" && x.b == "c").unwrap();
        assert_eq!((ac.rows, ac.raw), (2, 0.5));
        assert_eq!(ac.kappa, 0.0);
    }

    #[test]
    fn no_rows_in_common_no_pair() {
        assert!(agreement(&[label(1, "a", 0), label(2, "b", 0)], 2).is_empty());
    }
}
