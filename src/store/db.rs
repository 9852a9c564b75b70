//! The two back ends of the session store behind one small interface: a
//! SQLite file (one machine) or a schema in a PostgreSQL database (a team
//! across machines), through the `postgres` crate (tokio-postgres' own
//! blocking client: the store is called from plain threads).
//!
//! Statements are written once, in the SQL both understand, with `?1`-style
//! parameters (made `$1` for PostgreSQL). Values travel as `V`; a
//! PostgreSQL parameter takes the type the server inferred for it. A write
//! transaction holds the session's write lock from its start on both:
//! SQLite's `BEGIN IMMEDIATE`, PostgreSQL's transaction-level advisory lock
//! on the session, so writers queue and a transaction's reads are never
//! stale by the time it writes.
//!
//! The `postgres` client runs its own tokio runtime, which may not be
//! entered from inside another (the workstation's event loop): each
//! connection lives on a thread of its own (`Conn`), and the store's calls
//! are jobs sent to it.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;

/// A value passed to or read from the database.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Null,
    I(i64),
    F(f64),
    T(String),
    B(Vec<u8>),
}

impl From<i64> for V {
    fn from(v: i64) -> V {
        V::I(v)
    }
}
impl From<f64> for V {
    fn from(v: f64) -> V {
        V::F(v)
    }
}
impl From<&str> for V {
    fn from(v: &str) -> V {
        V::T(v.to_string())
    }
}
impl From<String> for V {
    fn from(v: String) -> V {
        V::T(v)
    }
}
impl From<&String> for V {
    fn from(v: &String) -> V {
        V::T(v.clone())
    }
}
impl From<Vec<u8>> for V {
    fn from(v: Vec<u8>) -> V {
        V::B(v)
    }
}
impl<T: Into<V>> From<Option<T>> for V {
    fn from(v: Option<T>) -> V {
        v.map(Into::into).unwrap_or(V::Null)
    }
}

/// Parameters of a statement: `p![a, b]`.
macro_rules! p {
    ($($x:expr),* $(,)?) => { &[$($crate::store::db::V::from($x)),*][..] };
}
pub(crate) use p;

/// A value read back as a Rust type.
pub trait FromV: Sized {
    fn from_v(v: &V) -> Result<Self>;
}
impl FromV for i64 {
    fn from_v(v: &V) -> Result<i64> {
        match v {
            V::I(i) => Ok(*i),
            other => bail!("expected an integer, found {other:?}"),
        }
    }
}
impl FromV for f64 {
    fn from_v(v: &V) -> Result<f64> {
        match v {
            V::F(f) => Ok(*f),
            V::I(i) => Ok(*i as f64),
            other => bail!("expected a number, found {other:?}"),
        }
    }
}
impl FromV for String {
    fn from_v(v: &V) -> Result<String> {
        match v {
            V::T(s) => Ok(s.clone()),
            other => bail!("expected text, found {other:?}"),
        }
    }
}
impl FromV for Vec<u8> {
    fn from_v(v: &V) -> Result<Vec<u8>> {
        match v {
            V::B(b) => Ok(b.clone()),
            other => bail!("expected bytes, found {other:?}"),
        }
    }
}
impl<T: FromV> FromV for Option<T> {
    fn from_v(v: &V) -> Result<Option<T>> {
        match v {
            V::Null => Ok(None),
            v => T::from_v(v).map(Some),
        }
    }
}

/// One row read back.
#[derive(Debug, Clone)]
pub struct R(Vec<V>);

impl R {
    pub fn get<T: FromV>(&self, i: usize) -> Result<T> {
        let v = self.0.get(i).ok_or_else(|| anyhow!("no column {i}"))?;
        T::from_v(v).with_context(|| format!("column {i}"))
    }
}

/// How long a call to the store may take before the caller is told the
/// store does not answer (the workstation waits on some of them).
pub const STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A connection to a PostgreSQL server on a thread of its own: the client
/// and its prepared statements live there; `run` sends it a job and waits
/// (at most `STORE_TIMEOUT`; while a job that overran is still running,
/// further calls fail at once instead of queueing behind it). A connection
/// that closed (a server restart) is opened again before the next job,
/// its settings (`setup`) applied again, unless a transaction was open on
/// it (its statements fail until it ends) or it holds locks (`hold`: a
/// lock lost is not taken again behind the holder's back).
pub struct Conn {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Jobs sent, and jobs the thread finished.
    sent: std::cell::Cell<u64>,
    finished: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The thread ends (its client dropped, the connection closed).
    ended: std::sync::mpsc::Receiver<()>,
    /// (A connection that holds locks) they were lost and not taken back.
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Takes a lock connection's locks again on a new connection: true when it
/// got them all.
pub type Relock = Box<dyn Fn(&mut postgres::Client) -> Result<bool> + Send>;

/// What a job works with on the connection's thread.
pub struct PgState {
    pub client: postgres::Client,
    stmts: HashMap<String, postgres::Statement>,
    cfg: postgres::Config,
    /// Statements that set the connection up, run again on a new one.
    setup: Vec<String>,
    in_tx: bool,
    /// (A connection that holds locks: never opened again behind the
    /// holder's back, only by the watch) how to take them again.
    relock: Option<Relock>,
}

impl PgState {
    /// Runs `sql` now and again on every new connection.
    pub fn setup(&mut self, sql: &str) -> Result<()> {
        self.client.batch_execute(sql)?;
        self.setup.push(sql.to_string());
        Ok(())
    }

    fn reopen(&mut self) -> Result<()> {
        let mut client = self.cfg.connect(postgres::NoTls)?;
        for sql in &self.setup {
            client.batch_execute(sql)?;
        }
        self.client = client;
        self.stmts.clear();
        tracing::info!("connected to the store again");
        Ok(())
    }
}

type Job = Box<dyn FnOnce(&mut PgState) + Send>;

impl Conn {
    /// Connects with `cfg` on a new thread.
    pub fn open(cfg: postgres::Config) -> Result<Conn> {
        let wait = cfg.get_connect_timeout().copied().unwrap_or(std::time::Duration::from_secs(10)) + std::time::Duration::from_secs(5);
        let (jobs, inbox) = std::sync::mpsc::channel::<Job>();
        let (ready_tx, ready) = std::sync::mpsc::sync_channel::<Result<()>>(1);
        let (ended_tx, ended) = std::sync::mpsc::sync_channel::<()>(1);
        let finished = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lost_flag = lost.clone();
        let thread = std::thread::Builder::new().name("labelrest-pg".into()).spawn(move || {
            let client = match cfg.connect(postgres::NoTls) {
                Ok(c) => {
                    let _ = ready_tx.send(Ok(()));
                    c
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            let mut state = PgState { client, stmts: HashMap::new(), cfg, setup: Vec::new(), in_tx: false, relock: None };
            loop {
                match inbox.recv_timeout(WATCH) {
                    Ok(job) => {
                        if state.client.is_closed() && !state.in_tx && state.relock.is_none() {
                            if let Err(e) = state.reopen() {
                                tracing::warn!("cannot connect to the store again: {e}");
                            }
                        }
                        job(&mut state);
                    }
                    // A connection that holds locks looks after them: after a
                    // server restart it takes them again, or says they are lost.
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        let Some(relock) = state.relock.take() else { continue };
                        if !lost.load(std::sync::atomic::Ordering::SeqCst) && state.client.simple_query("SELECT 1").is_err() {
                            let back = state.reopen().and_then(|()| relock(&mut state.client));
                            match back {
                                Ok(true) => tracing::info!("took the session's locks again after the store came back"),
                                Ok(false) => {
                                    tracing::error!(
                                        "a lock this process held was taken by another process while the store restarted (the same annotator opened elsewhere, or another trainer)"
                                    );
                                    lost.store(true, std::sync::atomic::Ordering::SeqCst);
                                }
                                // Not back yet: tried again at the next look.
                                Err(e) => tracing::warn!("cannot take the session's locks again yet: {e:#}"),
                            }
                        }
                        state.relock = Some(relock);
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            drop(state);
            let _ = ended_tx.send(());
        })?;
        match ready.recv_timeout(wait) {
            Ok(Ok(())) => Ok(Conn { jobs: Some(jobs), thread: Some(thread), sent: Default::default(), finished, ended, lost: lost_flag }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            // The thread stays behind, stuck in its connect; it ends when that does.
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => bail!("the server did not answer within {} s", wait.as_secs()),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => bail!("the connection's thread ended"),
        }
    }

    /// Runs `f` with the connection, on its thread; waits for its answer.
    /// A job that fails because the connection closed under it (a server
    /// restart), outside a transaction, runs once more on a new connection.
    pub fn run<R: Send + 'static>(&self, f: impl Fn(&mut PgState) -> Result<R> + Send + 'static) -> Result<R> {
        self.run_within(STORE_TIMEOUT, f)
    }

    /// `run`, waiting at most `limit` (letting go of locks on the way out).
    pub fn run_within<R: Send + 'static>(
        &self,
        limit: std::time::Duration,
        f: impl Fn(&mut PgState) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let behind = self.sent.get().saturating_sub(self.finished.load(std::sync::atomic::Ordering::SeqCst));
        if behind > 0 {
            bail!("the store has not answered for {} s or more (still waiting for it)", STORE_TIMEOUT.as_secs());
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<R>>(1);
        let finished = self.finished.clone();
        let job: Job = Box::new(move |st| {
            let was_in_tx = st.in_tx;
            let mut r = f(st);
            if r.is_err() && st.client.is_closed() && !was_in_tx && st.relock.is_none() {
                st.in_tx = false;
                match st.reopen() {
                    Ok(()) => r = f(st),
                    Err(e) => tracing::warn!("cannot connect to the store again: {e}"),
                }
            }
            // Counted before the answer goes: the caller's next call sees it.
            finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = tx.send(r);
        });
        self.jobs
            .as_ref()
            .ok_or_else(|| anyhow!("the connection is closed"))?
            .send(job)
            .map_err(|_| anyhow!("the connection's thread ended"))?;
        self.sent.set(self.sent.get() + 1);
        match rx.recv_timeout(limit) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => bail!("the store did not answer within {} s", limit.as_secs()),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => bail!("the connection's thread ended"),
        }
    }
}

impl Conn {
    /// Whether a job sent has not answered yet (it ran past its time).
    pub fn behind(&self) -> bool {
        self.sent.get() > self.finished.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ends the transaction in progress without waiting: the ROLLBACK goes
    /// in the queue behind a statement that has not answered yet (which
    /// then cannot be committed by the next transaction's COMMIT, nor keep
    /// the connection inside the old transaction).
    pub fn rollback_queued(&self) {
        let finished = self.finished.clone();
        let job: Job = Box::new(move |st| {
            if let Err(e) = st.client.batch_execute("ROLLBACK") {
                tracing::warn!("cannot roll back: {e}");
            }
            st.in_tx = false;
            finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        if let Some(jobs) = self.jobs.as_ref() {
            if jobs.send(job).is_ok() {
                self.sent.set(self.sent.get() + 1);
            }
        }
    }

    /// Marks the connection as holding locks, taken again by `relock` after
    /// a server restart (`lost` when they cannot be).
    pub fn hold(&self, relock: Relock) -> Result<()> {
        let job: Job = Box::new(move |st| {
            st.relock = Some(relock);
        });
        self.jobs
            .as_ref()
            .ok_or_else(|| anyhow!("the connection is closed"))?
            .send(job)
            .map_err(|_| anyhow!("the connection's thread ended"))?;
        // (Jobs run in order: this one is done when it answers.)
        self.run(|_| Ok(()))
    }

    /// Whether the locks it held were lost (the store restarted and another
    /// process took them).
    pub fn lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// How often a connection that holds locks checks that it still does.
const WATCH: std::time::Duration = std::time::Duration::from_secs(2);

impl Drop for Conn {
    fn drop(&mut self) {
        drop(self.jobs.take());
        // Closed before this returns (a lock then is free for the next
        // process), unless the store does not answer (a job still running
        // past its time, or a close that hangs): then the thread is left to
        // end when it does.
        let stuck = self.sent.get() > self.finished.load(std::sync::atomic::Ordering::SeqCst);
        if !stuck && self.ended.recv_timeout(std::time::Duration::from_secs(2)).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// The PostgreSQL side of a session: its connection and the key of the
/// session's write lock.
pub struct Pg {
    conn: Conn,
    write_key: i64,
}

/// A connection to a session's database.
pub enum Db {
    Sqlite(rusqlite::Connection),
    Pg(Pg),
}

impl rusqlite::ToSql for V {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            V::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            V::I(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            V::F(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            V::T(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            V::B(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

impl postgres::types::ToSql for V {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        match self {
            V::Null => Ok(postgres::types::IsNull::Yes),
            V::I(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::UNKNOWN => i.to_string().to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            V::F(f) => match *ty {
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => f.to_sql(ty, out),
            },
            V::T(s) => s.to_sql(ty, out),
            V::B(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// `?1` becomes `$1` (the statements here hold no `?` in literals).
fn pg_sql(sql: &str) -> String {
    sql.replace('?', "$")
}

fn pg_value(row: &postgres::Row, i: usize) -> Result<V> {
    use postgres::types::Type;
    let ty = row.columns()[i].type_().clone();
    Ok(match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(V::I),
        Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(|v| V::I(v as i64)),
        Type::INT2 => row.try_get::<_, Option<i16>>(i)?.map(|v| V::I(v as i64)),
        Type::OID => row.try_get::<_, Option<u32>>(i)?.map(|v| V::I(v as i64)),
        Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(|v| V::I(v as i64)),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(V::F),
        Type::FLOAT4 => row.try_get::<_, Option<f32>>(i)?.map(|v| V::F(v as f64)),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(V::B),
        _ => row.try_get::<_, Option<String>>(i).with_context(|| format!("column {i} of type {ty}"))?.map(V::T),
    }
    .unwrap_or(V::Null))
}

impl PgState {
    fn stmt(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&pg_sql(sql))?;
        self.stmts.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

fn pg_params(p: &[V]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    p.iter().map(|v| v as &(dyn postgres::types::ToSql + Sync)).collect()
}

impl Db {
    /// A PostgreSQL connection working in `schema`, whose writers queue on
    /// the advisory lock `write_key`.
    pub fn pg(conn: Conn, schema: &str, write_key: i64) -> Result<Db> {
        let set = format!("SET search_path TO {}", quote_ident(schema));
        conn.run(move |st| st.setup(&set))?;
        Ok(Db::Pg(Pg { conn, write_key }))
    }

    /// (PostgreSQL) runs `f` with the client itself (in the transaction, if one is open).
    pub fn run_pg<R: Send + 'static>(&self, f: impl Fn(&mut PgState) -> Result<R> + Send + 'static) -> Result<R> {
        match self {
            Db::Pg(pg) => pg.conn.run(f),
            Db::Sqlite(_) => bail!("not a session in PostgreSQL"),
        }
    }

    pub fn is_pg(&self) -> bool {
        matches!(self, Db::Pg(_))
    }

    /// Runs a statement; returns the number of rows it changed.
    pub fn exec(&self, sql: &str, p: &[V]) -> Result<usize> {
        match self {
            Db::Sqlite(c) => Ok(c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(p.iter()))?),
            Db::Pg(pg) => {
                let (sql, p) = (sql.to_string(), p.to_vec());
                pg.conn.run(move |st| {
                    let s = st.stmt(&sql)?;
                    Ok(st.client.execute(&s, &pg_params(&p))? as usize)
                })
            }
        }
    }

    /// Runs statements without parameters, separated by `;`.
    pub fn batch(&self, sql: &str) -> Result<()> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Pg(pg) => {
                let sql = sql.to_string();
                pg.conn.run(move |st| {
                    let r = st.client.batch_execute(&sql);
                    match sql.trim() {
                        "BEGIN" => st.in_tx = r.is_ok(),
                        "COMMIT" | "ROLLBACK" => st.in_tx = false,
                        _ => {}
                    }
                    Ok(r?)
                })
            }
        }
    }

    /// Every row a query gives.
    pub fn query(&self, sql: &str, p: &[V]) -> Result<Vec<R>> {
        match self {
            Db::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let n = st.column_count();
                let mut rows = st.query(rusqlite::params_from_iter(p.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut v = Vec::with_capacity(n);
                    for i in 0..n {
                        use rusqlite::types::ValueRef;
                        v.push(match r.get_ref(i)? {
                            ValueRef::Null => V::Null,
                            ValueRef::Integer(i) => V::I(i),
                            ValueRef::Real(f) => V::F(f),
                            ValueRef::Text(t) => V::T(String::from_utf8_lossy(t).into_owned()),
                            ValueRef::Blob(b) => V::B(b.to_vec()),
                        });
                    }
                    out.push(R(v));
                }
                Ok(out)
            }
            Db::Pg(pg) => {
                let (sql, p) = (sql.to_string(), p.to_vec());
                pg.conn.run(move |st| {
                    let s = st.stmt(&sql)?;
                    let rows = st.client.query(&s, &pg_params(&p))?;
                    rows.iter().map(|r| (0..r.len()).map(|i| pg_value(r, i)).collect::<Result<Vec<V>>>().map(R)).collect()
                })
            }
        }
    }

    /// The first row a query gives, if any.
    pub fn row(&self, sql: &str, p: &[V]) -> Result<Option<R>> {
        Ok(self.query(sql, p)?.into_iter().next())
    }

    /// The first column of the one row a query gives (an error when none).
    pub fn one<T: FromV>(&self, sql: &str, p: &[V]) -> Result<T> {
        self.row(sql, p)?.ok_or_else(|| anyhow!("no row for: {}", sql.trim()))?.get(0)
    }

    /// The first column of the first row, if there is a row.
    pub fn opt<T: FromV>(&self, sql: &str, p: &[V]) -> Result<Option<T>> {
        self.row(sql, p)?.map(|r| r.get(0)).transpose()
    }

    /// The first column of every row.
    pub fn col<T: FromV>(&self, sql: &str, p: &[V]) -> Result<Vec<T>> {
        self.query(sql, p)?.iter().map(|r| r.get(0)).collect()
    }

    /// A write transaction that holds the session's write lock from its start.
    pub fn write_tx(&self) -> Result<Tx<'_>> {
        match self {
            Db::Sqlite(c) => c.execute_batch("BEGIN IMMEDIATE")?,
            Db::Pg(pg) => {
                let key = pg.write_key;
                pg.conn.run(move |st| {
                    st.client.batch_execute("BEGIN")?;
                    st.in_tx = true;
                    if let Err(e) = st.client.execute("SELECT pg_advisory_xact_lock($1)", &[&key]) {
                        let _ = st.client.batch_execute("ROLLBACK");
                        st.in_tx = false;
                        return Err(e.into());
                    }
                    Ok(())
                })?;
            }
        }
        Ok(Tx { db: self, done: false })
    }
}

impl Db {
    /// A read transaction: every query in it sees the store as it was at
    /// its first (one snapshot, whatever others commit meanwhile); it ends
    /// (rolled back: it wrote nothing) when dropped.
    pub fn read_tx(&self) -> Result<Tx<'_>> {
        match self {
            Db::Sqlite(c) => c.execute_batch("BEGIN DEFERRED")?,
            Db::Pg(pg) => pg.conn.run(move |st| {
                st.client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
                st.in_tx = true;
                Ok(())
            })?,
        }
        Ok(Tx { db: self, done: false })
    }
}

/// A transaction: rolled back when dropped before `commit`.
pub struct Tx<'a> {
    db: &'a Db,
    done: bool,
}

impl Tx<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        let r = self.db.batch("COMMIT");
        if r.is_err() {
            self.rollback();
        }
        r
    }

    fn rollback(&self) {
        match self.db {
            // Behind a statement still under way (it did not answer in
            // time): queued after it, not refused.
            Db::Pg(pg) if pg.conn.behind() => pg.conn.rollback_queued(),
            _ => {
                if let Err(e) = self.db.batch("ROLLBACK") {
                    tracing::warn!("cannot roll back: {e:#}");
                }
            }
        }
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.rollback();
        }
    }
}

/// An SQL identifier, quoted.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}
