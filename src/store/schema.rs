//! The database schema, its version, the connection's settings, and the
//! migration of older sessions (newer ones are refused).

use super::*;

pub(super) const SCHEMA: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE label_set(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT);
CREATE TABLE rows(
  id INTEGER PRIMARY KEY,
  split TEXT NOT NULL CHECK (split IN ('pool','test')),
  text TEXT NOT NULL,
  gold INTEGER REFERENCES label_set(id),
  source_line INTEGER NOT NULL
);
CREATE TABLE annotations(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  row_id INTEGER NOT NULL REFERENCES rows(id),
  label INTEGER NOT NULL REFERENCES label_set(id),
  source TEXT NOT NULL CHECK (source IN ('seed','person','adjudicated')),
  iteration INTEGER NOT NULL,
  at TEXT NOT NULL,
  predicted INTEGER,
  replaces INTEGER,
  active INTEGER NOT NULL DEFAULT 1,
  undone INTEGER NOT NULL DEFAULT 0,
  annotator TEXT
);
CREATE INDEX annotations_active ON annotations(row_id) WHERE active = 1;
CREATE INDEX annotations_undone ON annotations(id) WHERE undone = 1;
CREATE TABLE iterations(
  id INTEGER PRIMARY KEY,
  n_labels INTEGER NOT NULL,
  at TEXT NOT NULL,
  metrics TEXT NOT NULL
);
CREATE TABLE predictions(
  row_id INTEGER PRIMARY KEY REFERENCES rows(id),
  label INTEGER NOT NULL,
  prob REAL NOT NULL,
  entropy REAL NOT NULL,
  margin REAL NOT NULL,
  rank INTEGER,
  iteration INTEGER NOT NULL
);
CREATE TABLE reservations(
  row_id INTEGER PRIMARY KEY REFERENCES rows(id),
  annotator TEXT NOT NULL,
  pid INTEGER NOT NULL,
  host TEXT NOT NULL,
  until TEXT NOT NULL
);
CREATE TABLE honest(row_id INTEGER PRIMARY KEY REFERENCES rows(id), probs BLOB NOT NULL);
CREATE TABLE overlap(row_id INTEGER PRIMARY KEY REFERENCES rows(id));
";

pub(super) fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before it returns, also in WAL mode.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl Session {
    pub(super) fn check_schema(&self, migrate: bool) -> Result<()> {
        let has_meta: bool = if self.db.is_pg() {
            self.db.one::<i64>(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'meta'",
                p![],
            )
        } else {
            self.db.one::<i64>("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'", p![])
        }
        .map(|n| n > 0)
        .with_context(|| format!("{} is not a labelrest session database", self.location()))?;
        if !has_meta {
            bail!("{} is not a labelrest session (no meta table)", self.location());
        }
        let v: Option<String> = self.db.opt("SELECT value FROM meta WHERE key='schema_version'", p![])?;
        let v: i64 = v
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("session '{}' has no schema version; it is not a labelrest session", self.name))?;
        if v > SCHEMA_VERSION {
            bail!(
                "session '{}' was written by a newer labelrest (schema {v}, this one reads up to {SCHEMA_VERSION}); upgrade labelrest to open it",
                self.name
            );
        }
        if v < SCHEMA_VERSION {
            if !migrate {
                bail!("session '{}' has the older schema {v}; open it once with `labelrest label` to migrate it", self.name);
            }
            self.migrate(v)?;
        }
        Ok(())
    }

    /// Migrates from an older schema, step by step, in one transaction.
    fn migrate(&self, from: i64) -> Result<()> {
        if self.db.is_pg() {
            bail!("session '{}' in the store has schema {from}, which this labelrest cannot migrate", self.name);
        }
        let tx = self.write_tx()?;
        // Another process may have migrated it while this one waited.
        let now: Option<String> = tx.opt("SELECT value FROM meta WHERE key='schema_version'", p![])?;
        if now.and_then(|v| v.parse::<i64>().ok()) == Some(SCHEMA_VERSION) {
            return Ok(());
        }
        let mut v = from;
        while v < SCHEMA_VERSION {
            match v {
                // Schema 1 had no record of what the model predicted when a
                // person decided, so no kept-prediction rate.
                1 => {
                    tx.batch("ALTER TABLE annotations ADD COLUMN predicted INTEGER;")?;
                }
                // Schema 2 did not record who gave a label (`stats` says "not recorded").
                2 => {
                    tx.batch("ALTER TABLE annotations ADD COLUMN annotator TEXT;")?;
                }
                // Schema 3 had one annotator at a time (no reservations) and
                // calibrated on the cross-validation alone (no honest probabilities).
                3 => {
                    tx.batch(
                        "CREATE TABLE reservations(row_id INTEGER PRIMARY KEY REFERENCES rows(id), annotator TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL, until TEXT NOT NULL);
                         CREATE TABLE honest(row_id INTEGER PRIMARY KEY REFERENCES rows(id), probs BLOB NOT NULL);",
                    )?;
                }
                // Schema 4 had one label in use per row: no rows sent to two
                // annotators (overlap), no adjudicated labels.
                4 => {
                    tx.batch(
                        "CREATE TABLE annotations_5(
                           id INTEGER PRIMARY KEY AUTOINCREMENT,
                           row_id INTEGER NOT NULL REFERENCES rows(id),
                           label INTEGER NOT NULL REFERENCES label_set(id),
                           source TEXT NOT NULL CHECK (source IN ('seed','person','adjudicated')),
                           iteration INTEGER NOT NULL,
                           at TEXT NOT NULL,
                           predicted INTEGER,
                           replaces INTEGER,
                           active INTEGER NOT NULL DEFAULT 1,
                           undone INTEGER NOT NULL DEFAULT 0,
                           annotator TEXT
                         );
                         INSERT INTO annotations_5(id, row_id, label, source, iteration, at, predicted, replaces, active, undone, annotator)
                           SELECT id, row_id, label, source, iteration, at, predicted, replaces, active, undone, annotator FROM annotations;
                         DROP TABLE annotations;
                         ALTER TABLE annotations_5 RENAME TO annotations;
                         CREATE INDEX annotations_active ON annotations(row_id) WHERE active = 1;
                         CREATE INDEX annotations_undone ON annotations(id) WHERE undone = 1;
                         CREATE TABLE overlap(row_id INTEGER PRIMARY KEY REFERENCES rows(id));",
                    )?;
                }
                other => bail!("session '{}' has schema {other}, which this labelrest cannot migrate", self.name),
            }
            v += 1;
        }
        tx.exec("UPDATE meta SET value = ?1 WHERE key = 'schema_version'", p![SCHEMA_VERSION.to_string()])?;
        tx.commit()?;
        tracing::info!("migrated session {} from schema {from} to {SCHEMA_VERSION}", self.name);
        Ok(())
    }
}
