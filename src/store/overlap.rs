//! Rows sent to two annotators (`--overlap F`), what a row's labels add up
//! to when several annotators gave one, and adjudication.
//!
//! An overlap row keeps one label in use per annotator. It teaches the
//! model once two annotators agree on it, or once the adjudicator settled
//! it; with one annotator's label it waits for a second (not learnt from,
//! so the second annotator is not shown a prediction that learnt the first
//! one's answer; export writes that one label, a person's); when they
//! disagree it is a dispute, kept out of training and export until
//! adjudicated. A third annotator does not label it. Every other row has
//! one label in use, whoever gave it, as before.

use super::*;
use std::collections::{BTreeMap, HashSet};

/// Whether row `id` falls in the share `f` of rows sent to two annotators:
/// a fixed hash of the id, so raising `f` keeps the rows chosen before.
pub fn in_overlap_share(id: i64, f: f64) -> bool {
    let mut z = (id as u64) ^ 0x6c61_6265_6c72_6573;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z >> 11) as f64 / (1u64 << 53) as f64) < f
}

/// The labels of a session, resolved across annotators.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// The label of every row that has one in use: what the model learns
    /// from and export writes as the person's. Oldest first (an overlap
    /// row where two agree at the place of its later label). An agreed
    /// row names its annotators joined by `+`.
    pub labels: Vec<Label>,
    /// Overlap rows with one annotator's label, waiting for a second.
    pub waiting: Vec<Label>,
    /// Overlap rows whose annotators disagree, not adjudicated yet.
    pub disputes: Vec<Dispute>,
    /// Every annotator's label on every overlap row (for agreement).
    pub overlap_labels: Vec<Label>,
}

/// What `Session::adjudicate` came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adjudication {
    /// Settled: the label is on disk.
    Done,
    /// Someone (named) adjudicated it already.
    Settled(String),
    /// Its annotators do not disagree (any more), or it is not sent to two.
    NotDisputed,
    /// This adjudicator gave one of its labels: another settles it.
    Yours,
}

/// An overlap row whose annotators gave different labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispute {
    pub row_id: i64,
    /// Each annotator's label, in the order given.
    pub labels: Vec<Label>,
}

impl Resolved {
    /// The disputes adjudicator `me` may settle: those they gave no label in
    /// (one's own disagreement is for another adjudicator).
    pub fn disputes_for(&self, me: &str) -> Vec<&Dispute> {
        self.disputes.iter().filter(|d| !d.labels.iter().any(|l| l.annotator.as_deref() == Some(me))).collect()
    }

    /// The overlap rows waiting for a second label that `me` has not given:
    /// first in their queue, so that agreement builds up.
    pub fn waiting_for(&self, me: &str) -> Vec<i64> {
        self.waiting.iter().filter(|l| l.annotator.as_deref() != Some(me)).map(|l| l.row_id).collect()
    }

    /// Who a dispute's annotators are, by name (`alice,bob`).
    pub fn dispute_annotators(d: &Dispute) -> String {
        let mut names: Vec<&str> = d.labels.iter().filter_map(|l| l.annotator.as_deref()).collect();
        names.sort_unstable();
        names.join(",")
    }

    /// What annotator `me` sees of each row: their own label on an
    /// overlap row, the row's label elsewhere; rows it still asks them for
    /// (waiting for a second annotator, not theirs) have none. Returns the
    /// labels (oldest first) and the disputed rows they have no label on
    /// (closed to them: not in their queue).
    pub fn seen_by(&self, me: &str) -> (Vec<Label>, Vec<i64>) {
        let mine = |l: &Label| l.annotator.as_deref() == Some(me);
        let mut seen: Vec<Label> = self.labels.clone();
        seen.extend(self.waiting.iter().filter(|l| mine(l)).cloned());
        let mut closed = Vec::new();
        for d in &self.disputes {
            match d.labels.iter().find(|l| mine(l)) {
                Some(l) => seen.push(l.clone()),
                None => closed.push(d.row_id),
            }
        }
        // In the order given (ids grow with time; agreed rows at their later label).
        seen.sort_by_key(|l| l.seq);
        (seen, closed)
    }
}

/// Resolves the labels in use (`raw`, oldest first) given the overlap rows.
pub fn resolve(raw: Vec<Label>, overlap: &HashSet<i64>) -> Resolved {
    let mut by_row: BTreeMap<i64, Vec<Label>> = BTreeMap::new();
    for l in raw {
        by_row.entry(l.row_id).or_default().push(l);
    }
    let mut r = Resolved::default();
    for (row, mut ls) in by_row {
        ls.sort_by_key(|l| l.seq);
        if overlap.contains(&row) {
            r.overlap_labels.extend(ls.iter().filter(|l| l.source != Source::Adjudicated).cloned());
        }
        if let Some(a) = ls.iter().rev().find(|l| l.source == Source::Adjudicated) {
            r.labels.push(a.clone());
            continue;
        }
        if !overlap.contains(&row) {
            // One label in use (the latest, should a session hold more).
            if let Some(l) = ls.pop() {
                r.labels.push(l);
            }
            continue;
        }
        match ls.len() {
            0 => {}
            1 => r.waiting.push(ls.remove(0)),
            _ if ls.iter().all(|l| l.label == ls[0].label) => {
                let mut agreed = ls.last().cloned().expect("two labels");
                let mut names: Vec<&str> = ls.iter().filter_map(|l| l.annotator.as_deref()).collect();
                names.sort_unstable();
                agreed.annotator = Some(names.join("+"));
                r.labels.push(agreed);
            }
            _ => r.disputes.push(Dispute { row_id: row, labels: ls }),
        }
    }
    r.labels.sort_by_key(|l| l.seq);
    r.waiting.sort_by_key(|l| l.seq);
    r
}

impl Session {
    /// The rows sent to two annotators.
    pub fn overlap_rows(&self) -> Result<HashSet<i64>> {
        self.ctx(self.db.col::<i64>("SELECT row_id FROM overlap", p![]).map(|v| v.into_iter().collect()))
    }

    /// Sends the share `f` (0 to 1) of the rows to two annotators: the
    /// rows of that share with no label yet join (those labelled already
    /// keep their one label); rows outside it leave unless two annotators
    /// labelled them already. Stored in the settings. Returns how many
    /// rows are overlap rows now.
    pub fn set_overlap(&self, f: f64) -> Result<usize> {
        if !(0.0..=1.0).contains(&f) || f.is_nan() {
            bail!("the overlap is a share of the rows, from 0 to 1, not {f}");
        }
        let r = (|| -> Result<usize> {
            let tx = self.write_tx()?;
            let pool: Vec<(i64, i64)> = tx
                .query(
                    "SELECT r.id, (SELECT count(*) FROM annotations a WHERE a.row_id = r.id AND a.active = 1) FROM rows r WHERE r.split = 'pool'",
                    p![],
                )?
                .iter()
                .map(|r| anyhow::Ok((r.get(0)?, r.get(1)?)))
                .collect::<Result<Vec<_>>>()?;
            let now: HashSet<i64> = tx.col::<i64>("SELECT row_id FROM overlap", p![])?.into_iter().collect();
            for (id, labels) in pool {
                let want = in_overlap_share(id, f);
                if want && !now.contains(&id) && labels == 0 {
                    tx.exec("INSERT INTO overlap(row_id) VALUES (?1)", p![id])?;
                } else if !want && now.contains(&id) && labels < 2 {
                    tx.exec("DELETE FROM overlap WHERE row_id = ?1", p![id])?;
                }
            }
            let mut s: Settings = serde_json::from_str(&tx.one::<String>("SELECT value FROM meta WHERE key='settings'", p![])?)?;
            s.overlap = f;
            tx.exec("UPDATE meta SET value = ?1 WHERE key = 'settings'", p![serde_json::to_string(&s)?])?;
            let n: i64 = tx.one("SELECT count(*) FROM overlap", p![])?;
            tx.commit()?;
            Ok(n as usize)
        })();
        r.with_context(|| format!("cannot set the overlap of session '{}' ({})", self.name, self.location()))
    }

    /// Every label in use, each annotator's on an overlap row, oldest first.
    pub fn active_labels(&self) -> Result<Vec<Label>> {
        let k = self.n_labels()?;
        type Raw = (i64, i64, i64, String, i64, Option<i64>, Option<String>);
        let rows: Vec<Raw> = self.ctx((|| -> Result<_> {
            self.db
                .query(
                    "SELECT id, row_id, label, source, iteration, predicted, annotator FROM annotations WHERE active=1 ORDER BY id",
                    p![],
                )?
                .iter()
                .map(|r| anyhow::Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
                .collect::<Result<Vec<_>>>()
        })())?;
        rows.into_iter()
            .map(|(seq, row_id, label, source, iteration, predicted, annotator)| {
                Ok(Label {
                    row_id,
                    label: self.check_label("the label", row_id, label, k)?,
                    source: self.ctx(Source::parse(&source))?,
                    iteration,
                    // A prediction out of range only loses the kept-rate figure.
                    predicted: predicted.filter(|&p| p >= 0 && (p as u64) < k as u64).map(|p| p as u32),
                    annotator,
                    seq,
                })
            })
            .collect()
    }

    /// The session's labels resolved across annotators (`resolve`).
    pub fn resolved(&self) -> Result<Resolved> {
        Ok(resolve(self.active_labels()?, &self.overlap_rows()?))
    }

    /// Whether row `row_id` is no longer this annotator's to label from
    /// the queue because others labelled it (an overlap row: two others
    /// did, or it was adjudicated). Returns who, when so.
    pub fn closed_by_others(&self, row_id: i64) -> Result<Option<String>> {
        let given = self.ctx(given_labels(&self.db, row_id))?;
        let overlap = self.ctx(is_overlap(&self.db, row_id))?;
        let me = self.annotator.as_str();
        if given.iter().any(|(a, _)| a.as_deref() == Some(me)) || open_to(me, &given, overlap) {
            return Ok(None);
        }
        Ok(Some(given.iter().map(|(a, s)| a.clone().unwrap_or_else(|| s.clone())).collect::<Vec<_>>().join(" and ")))
    }

    /// Who adjudicated row `row_id`, and the label, when someone did.
    pub fn adjudicated_by(&self, row_id: i64) -> Result<Option<(String, u32)>> {
        let r: Option<(Option<String>, i64)> = self.ctx((|| -> Result<_> {
            self.db
                .row("SELECT annotator, label FROM annotations WHERE row_id=?1 AND active=1 AND source='adjudicated'", p![row_id])?
                .map(|r| anyhow::Ok((r.get(0)?, r.get(1)?)))
                .transpose()
        })())?;
        let k = self.n_labels()?;
        r.map(|(a, l)| Ok((a.unwrap_or_default(), self.check_label("the adjudicated label", row_id, l, k)?))).transpose()
    }

    /// Who closed an overlap row this annotator has not labelled (two
    /// annotators did, or it was adjudicated); None for any other row.
    pub fn overlap_closed(&self, row_id: i64) -> Result<Option<ClosedBy>> {
        if !self.ctx(is_overlap(&self.db, row_id))? {
            return Ok(None);
        }
        let given = self.ctx(given_labels(&self.db, row_id))?;
        if given.iter().any(|(a, s)| s == "person" && a.as_deref() == Some(self.annotator.as_str())) {
            return Ok(None);
        }
        Ok(full(&given))
    }

    /// Settles a disputed overlap row with `label`, as this annotator (the
    /// adjudicator); `Done` returns when it is on disk. The adjudicated
    /// label is the row's from then on (undo takes it back). Decided inside
    /// the write transaction, so two adjudicators never overwrite each
    /// other and a dispute that ended a moment ago is not settled.
    pub fn adjudicate(&self, row_id: i64, label: u32, iteration: i64, predicted: Option<u32>) -> Result<Adjudication> {
        let r = (|| -> Result<Adjudication> {
            self.check_held()?;
            let tx = self.write_tx()?;
            let nlabels: i64 = tx.one("SELECT count(*) FROM label_set", p![])?;
            if label as i64 >= nlabels {
                bail!("label {label} is not in the label set of session '{}'", self.name);
            }
            let exists: i64 = tx.one("SELECT count(*) FROM rows WHERE id=?1 AND split='pool'", p![row_id])?;
            if exists == 0 {
                bail!("no row {row_id} in the pool of session '{}'", self.name);
            }
            let given: Vec<(i64, String, Option<String>)> = tx
                .query("SELECT label, source, annotator FROM annotations WHERE row_id=?1 AND active=1", p![row_id])?
                .iter()
                .map(|r| anyhow::Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .collect::<Result<Vec<_>>>()?;
            if let Some(g) = given.iter().find(|g| g.1 == "adjudicated") {
                return Ok(Adjudication::Settled(g.2.clone().unwrap_or_default()));
            }
            let overlap: i64 = tx.one("SELECT count(*) FROM overlap WHERE row_id=?1", p![row_id])?;
            let distinct: HashSet<i64> = given.iter().filter(|g| g.1 != "adjudicated").map(|g| g.0).collect();
            if overlap == 0 || distinct.len() < 2 {
                return Ok(Adjudication::NotDisputed);
            }
            if given.iter().any(|g| g.1 == "person" && g.2.as_deref() == Some(self.annotator.as_str())) {
                return Ok(Adjudication::Yours);
            }
            tx.exec(
                "INSERT INTO annotations(row_id, label, source, iteration, at, predicted, annotator) VALUES (?1, ?2, 'adjudicated', ?3, ?4, ?5, ?6)",
                p![row_id, label as i64, iteration, now(), predicted.map(|p| p as i64), &self.annotator],
            )?;
            tx.commit()?;
            Ok(Adjudication::Done)
        })();
        r.with_context(|| format!("the adjudication of row {row_id} was not saved to {}", self.location()))
    }
}

/// The labels in use on a row: (annotator, source).
pub(super) fn given_labels(db: &Db, row_id: i64) -> Result<Vec<(Option<String>, String)>> {
    db.query("SELECT annotator, source FROM annotations WHERE row_id=?1 AND active=1 ORDER BY id", p![row_id])?
        .iter()
        .map(|r| anyhow::Ok((r.get(0)?, r.get(1)?)))
        .collect()
}

pub(super) fn is_overlap(db: &Db, row_id: i64) -> Result<bool> {
    Ok(db.one::<i64>("SELECT count(*) FROM overlap WHERE row_id=?1", p![row_id])? > 0)
}

/// Who closed an overlap row to another annotator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClosedBy {
    /// The adjudicator settled it.
    Adjudicator(String),
    /// Two (or more) annotators labelled it, by name.
    Annotators(Vec<String>),
}

impl ClosedBy {
    /// The names for a line a program reads (`annotate`): joined by `,`
    /// (which no annotator name may hold).
    pub fn names(&self) -> String {
        match self {
            ClosedBy::Adjudicator(a) => a.clone(),
            ClosedBy::Annotators(v) => v.join(","),
        }
    }
}

impl std::fmt::Display for ClosedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClosedBy::Adjudicator(a) => write!(f, "{a} (adjudicated)"),
            ClosedBy::Annotators(v) => write!(f, "{}", v.join(" and ")),
        }
    }
}

/// Who closed an overlap row to another annotator: the two (or more) who
/// labelled it, or the adjudicator. None while it is open.
pub(super) fn full(given: &[(Option<String>, String)]) -> Option<ClosedBy> {
    if let Some((a, _)) = given.iter().find(|(_, s)| s == "adjudicated") {
        return Some(ClosedBy::Adjudicator(a.clone().unwrap_or_else(|| "?".into())));
    }
    let mut names: Vec<String> = given.iter().filter_map(|(a, _)| a.clone()).collect();
    names.sort_unstable();
    names.dedup();
    (names.len() >= 2).then_some(ClosedBy::Annotators(names))
}

/// Whether a row with these labels in use asks annotator `me` for a label:
/// a row nobody labelled; an overlap row also while fewer than two
/// annotators labelled it, `me` not among them, and nobody adjudicated it.
pub(super) fn open_to(me: &str, given: &[(Option<String>, String)], overlap: bool) -> bool {
    if !overlap {
        return given.is_empty();
    }
    given.len() < 2 && !given.iter().any(|(a, s)| a.as_deref() == Some(me) || s == "adjudicated")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(seq: i64, row: i64, who: &str, label: u32, source: Source) -> Label {
        Label { row_id: row, label, source, iteration: 0, predicted: None, annotator: Some(who.into()), seq }
    }

    #[test]
    fn overlap_rows_resolve_by_agreement_and_adjudication() {
        use Source::*;
        let overlap: HashSet<i64> = [1, 2, 3, 4, 6].into_iter().collect();
        let raw = vec![
            l(1, 1, "alice", 0, Person), // row 1: alice and bob agree
            l(2, 2, "alice", 0, Person), // row 2: they disagree
            l(3, 3, "alice", 1, Person), // row 3: waits for a second label
            l(4, 5, "alice", 2, Person), // row 5: not an overlap row
            l(5, 1, "bob", 0, Person),
            l(6, 2, "bob", 1, Person),
            l(7, 4, "alice", 0, Person), // row 4: disagree, then adjudicated
            l(8, 4, "bob", 2, Person),
            l(9, 4, "carol", 2, Adjudicated),
        ];
        let r = resolve(raw, &overlap);
        let rows: Vec<(i64, u32, Option<&str>)> = r.labels.iter().map(|x| (x.row_id, x.label, x.annotator.as_deref())).collect();
        assert_eq!(rows, vec![(5, 2, Some("alice")), (1, 0, Some("alice+bob")), (4, 2, Some("carol"))]);
        assert_eq!(r.waiting.iter().map(|x| x.row_id).collect::<Vec<_>>(), vec![3]);
        assert_eq!(r.disputes.len(), 1);
        assert_eq!(r.disputes[0].row_id, 2);
        // Agreement counts every annotator's label on overlap rows, never the adjudication.
        assert_eq!(r.overlap_labels.len(), 7);
        // Alice sees her own labels; bob is asked for row 3; carol (not in
        // the dispute on row 2) is not asked for it.
        let (alice, closed) = r.seen_by("alice");
        let mut rows: Vec<i64> = alice.iter().map(|x| x.row_id).collect();
        rows.sort_unstable();
        assert_eq!((rows, closed), (vec![1, 2, 3, 4, 5], vec![]));
        let (bob, _) = r.seen_by("bob");
        assert!(!bob.iter().any(|x| x.row_id == 3));
        assert_eq!(bob.iter().find(|x| x.row_id == 2).map(|x| x.label), Some(1));
        let (carol, closed) = r.seen_by("carol");
        assert!(!carol.iter().any(|x| x.row_id == 2 || x.row_id == 3));
        assert_eq!(closed, vec![2]);
    }

    #[test]
    fn the_share_is_stable_and_about_right() {
        let n = (1..=10_000).filter(|&id| in_overlap_share(id, 0.1)).count();
        assert!((900..1100).contains(&n), "{n}");
        // Raising the share keeps the rows chosen before.
        assert!((1..=10_000).filter(|&id| in_overlap_share(id, 0.1)).all(|id| in_overlap_share(id, 0.3)));
        assert!(!(1..=1000).any(|id| in_overlap_share(id, 0.0)));
        assert!((1..=1000).all(|id| in_overlap_share(id, 1.0)));
    }

    /// Names with " and " in them stay whole: a program reads them split at `,`.
    #[test]
    fn closed_by_names_are_not_split() {
        let given = vec![(Some("Ann and Bo".to_string()), "person".to_string()), (Some("Cy".to_string()), "person".to_string())];
        let by = full(&given).unwrap();
        assert_eq!(by.names(), "Ann and Bo,Cy");
        assert_eq!(by.to_string(), "Ann and Bo and Cy");
        let adj = vec![(Some("Dee".to_string()), "adjudicated".to_string())];
        assert_eq!(full(&adj).unwrap().to_string(), "Dee (adjudicated)");
        assert_eq!(full(&given[..1]), None);
    }
}
