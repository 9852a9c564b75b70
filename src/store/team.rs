//! Several annotators on one session at once: write transactions that
//! take the write lock at their start (so concurrent writers queue on
//! SQLite's busy timeout instead of failing half-way), and the rows each
//! annotator has in the current batch (reserved, so nobody else is shown
//! them) until the batch is done, the process ends, or the reservation
//! runs out after a crash.

use super::*;

/// How long a reservation from another machine lasts (one from this machine
/// lasts while its process lives) unless renewed: a process renews its own
/// when it looks at the session (`marks`, every second or so while it works),
/// so a machine that dies frees its rows within this time.
pub const RESERVATION_TTL: std::time::Duration = std::time::Duration::from_secs(120);

/// This machine's name (reservations name it: only processes on this
/// machine can be checked for life), as it was when this process first
/// asked: what it wrote under that name stays its own if the name changes.
pub fn host_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()).clone()
}

/// Whether a reservation is still held: on this machine while its process
/// lives (however long the person reads), on another until its time runs
/// out.
pub(super) fn held(pid: i64, host: &str, until: &str, this_host: &str, now: &str) -> bool {
    if host == this_host {
        pid == std::process::id() as i64 || pid_alive(pid as i32)
    } else {
        until >= now
    }
}

fn at(offset: std::time::Duration) -> String {
    (chrono::Utc::now() + chrono::Duration::from_std(offset).unwrap_or_default()).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Session {
    /// A write transaction that holds the session's write lock from its start.
    pub(super) fn write_tx(&self) -> Result<db::Tx<'_>> {
        self.db.write_tx()
    }

    /// Drops reservations that no live process holds.
    fn drop_stale_reservations(tx: &Db) -> Result<()> {
        let holders: Vec<(i64, String, String)> = tx
            .query("SELECT pid, host, max(until) FROM reservations GROUP BY pid, host", p![])?
            .iter()
            .map(|r| anyhow::Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .collect::<Result<Vec<_>>>()?;
        let (host, now) = (host_name(), now());
        for (pid, h, until) in holders {
            if !held(pid, &h, &until, &host, &now) {
                tx.exec("DELETE FROM reservations WHERE pid=?1 AND host=?2", p![pid, h])?;
            }
        }
        Ok(())
    }

    /// Moves this process's reservations' end on (`RESERVATION_TTL` from now),
    /// at most every tenth of it.
    fn renew_reservations(&self) -> Result<()> {
        let due = self.renewed.get().is_none_or(|t| t.elapsed() >= RESERVATION_TTL / 10);
        if due {
            self.db.exec(
                "UPDATE reservations SET until = ?1 WHERE annotator = ?2 AND pid = ?3 AND host = ?4",
                p![at(RESERVATION_TTL), &self.annotator, std::process::id() as i64, host_name()],
            )?;
            self.renewed.set(Some(std::time::Instant::now()));
        }
        Ok(())
    }

    /// Reserves for this annotator the first `n` rows of `candidates` (in
    /// that order) that ask them for a label (no label; an overlap row:
    /// not theirs, fewer than two) and that nobody else has reserved,
    /// in place of what it held before; returns them. One transaction:
    /// two annotators asking at once never get the same row.
    pub fn reserve(&self, candidates: &[i64], n: usize) -> Result<Vec<i64>> {
        self.reserve_seeing(candidates, n).map(|(got, _)| got)
    }

    /// `reserve`, also returning the candidates it passed over because
    /// another annotator holds or labelled them (until it had `n`).
    pub fn reserve_seeing(&self, candidates: &[i64], n: usize) -> Result<(Vec<i64>, Vec<i64>)> {
        let r = (|| -> Result<(Vec<i64>, Vec<i64>)> {
            self.check_held()?;
            let tx = self.write_tx()?;
            Session::drop_stale_reservations(&tx)?;
            tx.exec("DELETE FROM reservations WHERE annotator=?1", p![&self.annotator])?;
            let (mut got, mut taken_by_others) = (Vec::new(), Vec::new());
            let until = at(RESERVATION_TTL);
            let host = host_name();
            // The candidates' state, a hundred at a time (one round trip each
            // to a server, not three a row, while writers wait).
            'scan: for chunk in candidates.chunks(100) {
                if got.len() >= n {
                    break;
                }
                let marks = (1..=chunk.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
                let ids: Vec<db::V> = chunk.iter().map(|&id| id.into()).collect();
                let reserved: std::collections::HashSet<i64> =
                    tx.col::<i64>(&format!("SELECT row_id FROM reservations WHERE row_id IN ({marks})"), &ids)?.into_iter().collect();
                let overlap: std::collections::HashSet<i64> =
                    tx.col::<i64>(&format!("SELECT row_id FROM overlap WHERE row_id IN ({marks})"), &ids)?.into_iter().collect();
                let mut given: HashMap<i64, Vec<(Option<String>, String)>> = HashMap::new();
                for r in tx.query(
                    &format!("SELECT row_id, annotator, source FROM annotations WHERE active=1 AND row_id IN ({marks}) ORDER BY id"),
                    &ids,
                )? {
                    given.entry(r.get(0)?).or_default().push((r.get(1)?, r.get(2)?));
                }
                for &id in chunk {
                    if got.len() >= n {
                        break 'scan;
                    }
                    let busy = reserved.contains(&id)
                        || !super::overlap::open_to(
                            &self.annotator,
                            given.get(&id).map(Vec::as_slice).unwrap_or(&[]),
                            overlap.contains(&id),
                        );
                    if !busy {
                        tx.exec(
                            "INSERT INTO reservations(row_id, annotator, pid, host, until) VALUES (?1, ?2, ?3, ?4, ?5)",
                            p![id, &self.annotator, std::process::id() as i64, &host, &until],
                        )?;
                        got.push(id);
                    } else {
                        taken_by_others.push(id);
                    }
                }
            }
            tx.commit()?;
            self.renewed.set(Some(std::time::Instant::now()));
            Ok((got, taken_by_others))
        })();
        r.with_context(|| format!("cannot reserve rows in {}", self.location()))
    }

    /// Lets go of this annotator's reservations.
    pub fn release_reservations(&self) -> Result<()> {
        self.ctx(self.db.exec("DELETE FROM reservations WHERE annotator=?1", p![&self.annotator]))?;
        Ok(())
    }

    /// The rows other annotators hold (live reservations only).
    pub fn reserved_by_others(&self) -> Result<std::collections::HashSet<i64>> {
        let v: Vec<(i64, i64, String, String)> = self.ctx((|| -> Result<_> {
            self.db
                .query("SELECT row_id, pid, host, until FROM reservations WHERE annotator<>?1", p![&self.annotator])?
                .iter()
                .map(|r| anyhow::Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .collect::<Result<Vec<_>>>()
        })())?;
        let (host, now) = (host_name(), now());
        let mut live: HashMap<(i64, String), bool> = HashMap::new();
        Ok(v.into_iter()
            .filter(|(_, pid, h, until)| *live.entry((*pid, h.clone())).or_insert_with(|| held(*pid, h, until, &host, &now)))
            .map(|(id, _, _, _)| id)
            .collect())
    }

    /// How many labels were given (or changed) since annotation `id`.
    pub fn annotations_since(&self, id: i64) -> Result<i64> {
        self.ctx(self.db.one("SELECT count(*) FROM annotations WHERE id > ?1", p![id]))
    }

    /// Who gave the label a row has now (None: no label, or a seed label).
    pub fn annotator_of(&self, row_id: i64) -> Result<Option<String>> {
        self.ctx(
            self.db
                .opt::<Option<String>>("SELECT annotator FROM annotations WHERE row_id=?1 AND active=1", p![row_id])
                .map(Option::flatten),
        )
    }

    /// A cheap look at what other processes may have changed.
    /// (Also renews this process's reservations, now and then.)
    pub fn marks(&self) -> Result<Marks> {
        if let Err(e) = self.renew_reservations() {
            tracing::warn!("cannot renew the reservations of {}: {e:#}", self.annotator);
        }
        self.ctx((|| -> Result<_> {
            let r = self.db.row(
                "SELECT (SELECT coalesce(max(id),0) FROM iterations), (SELECT count(*) FROM annotations WHERE active=1), (SELECT coalesce(max(id),0) FROM annotations), (SELECT value FROM meta WHERE key='retrain_asked'), (SELECT count(*) FROM annotations WHERE undone=1), (SELECT count(*) FROM overlap), (SELECT value FROM meta WHERE key='settings')",
                p![],
            )?.ok_or_else(|| anyhow!("no marks"))?;
            Ok(Marks {
                iteration: r.get(0)?,
                labels: r.get(1)?,
                last_annotation: r.get(2)?,
                retrain_asked: r.get::<Option<String>>(3)?.and_then(|v| v.parse().ok()).unwrap_or(0),
                undone: r.get(4)?,
                overlap: r.get(5)?,
                settings: {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    r.get::<Option<String>>(6)?.hash(&mut h);
                    h.finish()
                },
            })
        })())
    }

    /// Asks the process that trains for a retrain (an annotator who is not
    /// the trainer finished a batch): a counter in `meta` it watches.
    pub fn ask_retrain(&self) -> Result<()> {
        self.ctx(self.db.exec(
            "INSERT INTO meta(key, value) VALUES ('retrain_asked', '1') ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)",
            p![],
        ))?;
        Ok(())
    }

    /// Which annotator holds a row in their batch now, other than this one.
    pub fn held_by_other(&self, row_id: i64) -> Result<Option<String>> {
        let r: Option<(String, i64, String, String)> = self.ctx((|| -> Result<_> {
            self.db
                .row("SELECT annotator, pid, host, until FROM reservations WHERE row_id=?1 AND annotator<>?2", p![row_id, &self.annotator])?
                .map(|r| anyhow::Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .transpose()
        })())?;
        Ok(r.filter(|(_, pid, h, until)| held(*pid, h, until, &host_name(), &now())).map(|(a, _, _, _)| a))
    }
}

impl Marks {
    /// What moves whenever what the labels mean changes: a new label, an
    /// undo, or the rows sent to two annotators.
    pub fn labels_mark(&self) -> (i64, i64, i64) {
        (self.last_annotation, self.undone, self.overlap)
    }
}

/// What `Session::marks` sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    /// The last iteration's id (0: none).
    pub iteration: i64,
    /// Labels in use now.
    pub labels: i64,
    /// The last annotation's id (any change of any label moves it).
    pub last_annotation: i64,
    /// Retrains asked for by processes that do not train (`ask_retrain`).
    pub retrain_asked: i64,
    /// Labels undone (an undo of a relabel changes neither count above).
    pub undone: i64,
    /// Rows sent to two annotators (`--overlap` changes what the labels mean).
    pub overlap: i64,
    /// A digest of the session's settings (the strategy and mode are the team's).
    pub settings: u64,
}

impl Drop for Session {
    fn drop(&mut self) {
        // A working process lets go of its batch when it ends.
        if self.works_as_annotator {
            if let Err(e) = self.release_reservations() {
                tracing::warn!("cannot release the reservations of {}: {e:#}", self.annotator);
            }
        }
    }
}
