//! Several annotators on one session at once: write transactions that
//! take the write lock at their start (so concurrent writers queue on
//! SQLite's busy timeout instead of failing half-way), and the rows each
//! annotator has in the current batch (reserved, so nobody else is shown
//! them) until the batch is done, the process ends, or the reservation
//! runs out after a crash.

use super::*;

/// How long a reservation lasts without being renewed (a process renews
/// its own while it runs; one that crashed on this machine is released at
/// once, one on another machine after this long).
pub const RESERVATION_TTL: std::time::Duration = std::time::Duration::from_secs(120);

/// This machine's name (reservations name it: only processes on this
/// machine can be checked for life).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

fn at(offset: std::time::Duration) -> String {
    (chrono::Utc::now() + chrono::Duration::from_std(offset).unwrap_or_default()).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Session {
    /// A write transaction that holds SQLite's write lock from its start.
    pub(super) fn write_tx(&self) -> rusqlite::Result<rusqlite::Transaction<'_>> {
        rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)
    }

    /// Drops reservations whose process is gone (on this machine) or whose
    /// time ran out.
    fn drop_stale_reservations(tx: &rusqlite::Transaction<'_>) -> Result<()> {
        let host = host_name();
        let holders: Vec<(i64, String)> = {
            let mut st = tx.prepare("SELECT DISTINCT pid, host FROM reservations")?;
            let v = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<Vec<_>>>()?;
            v
        };
        for (pid, h) in holders {
            if h == host && pid != std::process::id() as i64 && !pid_alive(pid as i32) {
                tx.execute("DELETE FROM reservations WHERE pid=?1 AND host=?2", params![pid, h])?;
            }
        }
        tx.execute("DELETE FROM reservations WHERE until < ?1", params![now()])?;
        Ok(())
    }

    /// Reserves for this annotator the first `n` rows of `candidates` (in
    /// that order) that have no label and that nobody else has reserved,
    /// in place of what it held before; returns them. One transaction:
    /// two annotators asking at once never get the same row.
    pub fn reserve(&self, candidates: &[i64], n: usize) -> Result<Vec<i64>> {
        let r = (|| -> Result<Vec<i64>> {
            let tx = self.write_tx()?;
            Session::drop_stale_reservations(&tx)?;
            tx.execute("DELETE FROM reservations WHERE annotator=?1", params![self.annotator])?;
            let mut got = Vec::new();
            let until = at(RESERVATION_TTL);
            let host = host_name();
            {
                let mut taken = tx.prepare(
                    "SELECT (SELECT count(*) FROM reservations WHERE row_id=?1) + (SELECT count(*) FROM annotations WHERE row_id=?1 AND active=1)",
                )?;
                let mut ins = tx.prepare("INSERT INTO reservations(row_id, annotator, pid, host, until) VALUES (?1, ?2, ?3, ?4, ?5)")?;
                for &id in candidates {
                    if got.len() >= n {
                        break;
                    }
                    let busy: i64 = taken.query_row(params![id], |r| r.get(0))?;
                    if busy == 0 {
                        ins.execute(params![id, self.annotator, std::process::id() as i64, host, until])?;
                        got.push(id);
                    }
                }
            }
            tx.commit()?;
            Ok(got)
        })();
        r.with_context(|| format!("cannot reserve rows in {}", self.dir.join(DB_FILE).display()))
    }

    /// Renews this annotator's reservations (the process is alive).
    pub fn renew_reservations(&self) -> Result<()> {
        self.ctx(self.conn.execute("UPDATE reservations SET until=?1 WHERE annotator=?2", params![at(RESERVATION_TTL), self.annotator]))?;
        Ok(())
    }

    /// Lets go of this annotator's reservations.
    pub fn release_reservations(&self) -> Result<()> {
        self.ctx(self.conn.execute("DELETE FROM reservations WHERE annotator=?1", params![self.annotator]))?;
        Ok(())
    }

    /// The rows this annotator has reserved and not labelled yet.
    pub fn my_reservations(&self) -> Result<Vec<i64>> {
        self.ctx((|| {
            let mut st = self.conn.prepare(
                "SELECT r.row_id FROM reservations r WHERE r.annotator=?1 AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.row_id=r.row_id AND a.active=1) ORDER BY r.rowid",
            )?;
            let v = st.query_map(params![self.annotator], |r| r.get(0))?.collect::<rusqlite::Result<Vec<i64>>>();
            v
        })())
    }

    /// The rows other annotators have reserved (live reservations only).
    pub fn reserved_by_others(&self) -> Result<std::collections::HashSet<i64>> {
        let host = host_name();
        let v: Vec<(i64, i64, String)> = self.ctx((|| {
            let mut st = self.conn.prepare("SELECT row_id, pid, host FROM reservations WHERE annotator<>?1 AND until >= ?2")?;
            let v = st
                .query_map(params![self.annotator, now()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>();
            v
        })())?;
        let mut alive: HashMap<i64, bool> = HashMap::new();
        Ok(v.into_iter()
            .filter(|(_, pid, h)| *h != host || *alive.entry(*pid).or_insert_with(|| pid_alive(*pid as i32)))
            .map(|(id, _, _)| id)
            .collect())
    }

    /// The annotators at work now (holding reservations): (name, rows held).
    pub fn annotators_at_work(&self) -> Result<Vec<(String, i64)>> {
        self.ctx((|| {
            let mut st = self
                .conn
                .prepare("SELECT annotator, count(*) FROM reservations WHERE until >= ?1 GROUP BY annotator ORDER BY annotator")?;
            let v = st.query_map(params![now()], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<Vec<_>>>();
            v
        })())
    }

    /// A cheap look at what other processes may have changed.
    pub fn marks(&self) -> Result<Marks> {
        self.ctx(self.conn.query_row(
            "SELECT (SELECT coalesce(max(id),0) FROM iterations), (SELECT n_labels FROM iterations ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM annotations WHERE active=1), (SELECT coalesce(max(id),0) FROM annotations)",
            [],
            |r| Ok(Marks { iteration: r.get(0)?, iteration_labels: r.get::<_, Option<i64>>(1)?.unwrap_or(0), labels: r.get(2)?, last_annotation: r.get(3)? }),
        ))
    }
}

/// What `Session::marks` sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    /// The last iteration's id (0: none).
    pub iteration: i64,
    /// How many labels the last iteration learnt from.
    pub iteration_labels: i64,
    /// Labels in use now.
    pub labels: i64,
    /// The last annotation's id (any change of any label moves it).
    pub last_annotation: i64,
}

impl Drop for Session {
    fn drop(&mut self) {
        // A working process lets go of its batch when it ends.
        if !self._locks.is_empty() {
            if let Err(e) = self.release_reservations() {
                tracing::warn!("cannot release the reservations of {}: {e:#}", self.annotator);
            }
        }
    }
}
