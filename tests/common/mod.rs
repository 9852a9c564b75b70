#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn demo(file: &str) -> PathBuf {
    root().join("assets/demo").join(file)
}

/// Runs the real binary with a sessions folder.
pub fn labelrest(sessions: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labelrest"))
        .arg("--sessions")
        .arg(sessions)
        .args(args)
        .env("LABELREST_LOG", sessions.join("test.log"))
        .env_remove("LABELREST_STORE")
        .output()
        .expect("run labelrest")
}

/// Runs the real binary with a sessions folder and an environment where
/// colour is decided only by `env` (NO_COLOR, CLICOLOR_FORCE and CLICOLOR
/// from the test's own environment are removed).
pub fn labelrest_env(sessions: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_labelrest"));
    c.arg("--sessions").arg(sessions).args(args).env("LABELREST_LOG", sessions.join("test.log"));
    for v in ["NO_COLOR", "CLICOLOR_FORCE", "CLICOLOR", "RUST_LOG", "LABELREST_STORE"] {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run labelrest")
}

/// A small session from the first `rows` demo rows (gold labels), with no model yet.
pub fn small_demo_session(sessions: &Path, name: &str, rows: usize) {
    small_demo_session_with(sessions, name, rows, &[]);
}

/// `small_demo_session` with more arguments for `new` (settings).
pub fn small_demo_session_with(sessions: &Path, name: &str, rows: usize, more: &[&str]) {
    std::fs::create_dir_all(sessions).unwrap();
    let f = write(sessions, &format!("{name}-data.csv"), demo_head(rows).as_bytes());
    let mut args = vec!["new", name, "--data", f.to_str().unwrap(), "--label-col", "label", "--label-col-is", "gold"];
    args.extend_from_slice(more);
    let o = labelrest(sessions, &args);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The active labels of a row, oldest first, with their annotators, read
/// straight from a SQLite session's database (`sessions/NAME/session.db`).
pub fn active_labels(sessions: &Path, name: &str, row: i64) -> Vec<(i64, String)> {
    let c = rusqlite::Connection::open(sessions.join(name).join("session.db")).unwrap();
    let mut st = c.prepare("SELECT label, annotator FROM annotations WHERE row_id=?1 AND active=1 ORDER BY id").unwrap();
    let v = st.query_map([row], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<rusqlite::Result<Vec<_>>>().unwrap();
    v
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// The first `n` data lines of the demo train file, as CSV text with header.
pub fn demo_head(n: usize) -> String {
    let s = std::fs::read_to_string(demo("train.csv")).unwrap();
    s.lines().take(n + 1).collect::<Vec<_>>().join("\n") + "\n"
}

/// A labels file with the whole demo label set, in order of first appearance.
pub fn demo_labels(dir: &Path) -> PathBuf {
    let mut names: Vec<String> = Vec::new();
    let mut rdr = csv::Reader::from_path(demo("train.csv")).unwrap();
    for r in rdr.records() {
        let l = r.unwrap()[1].to_string();
        if !names.contains(&l) {
            names.push(l);
        }
    }
    write(dir, "labels.txt", (names.join("\n") + "\n").as_bytes())
}

/// `labelrest new NAME` on the whole demo data: gold labels and the held-out test file.
pub fn new_demo_session(sessions: &Path, name: &str) -> Output {
    let (train, test) = (demo("train.csv"), demo("test.csv"));
    labelrest(
        sessions,
        &[
            "new",
            name,
            "--data",
            train.to_str().unwrap(),
            "--label-col",
            "label",
            "--label-col-is",
            "gold",
            "--test",
            test.to_str().unwrap(),
        ],
    )
}

/// `labelrest annotate NAME ARGS` with `lines` on standard input; `env`
/// sets (Some) or removes (None) variables.
pub fn annotate(sessions: &Path, name: &str, args: &[&str], env: &[(&str, Option<&str>)], lines: &str) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_labelrest"));
    c.arg("--sessions").arg(sessions).args(["annotate", name]).args(args).env("LABELREST_LOG", sessions.join("test.log"));
    for (k, v) in env {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let mut child =
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), lines.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// A committed fixture of sentence-transformers embeddings
/// (`tests/fixtures/FILE`): its texts and their vectors, in order.
pub fn fixture_embeddings(file: &str) -> (Vec<String>, Vec<Vec<f32>>) {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root().join("tests/fixtures").join(file)).unwrap()).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["text"].as_str().unwrap().to_string(),
                i["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect(),
            )
        })
        .unzip()
}

/// The PostgreSQL server the tests may use (`LABELREST_TEST_PG`; `.ci/run`
/// starts a throwaway one). None where it is not set, saying that `what` is
/// skipped; on CI (`CI` set) its absence fails the test.
#[allow(dead_code)]
pub fn test_pg(what: &str) -> Option<String> {
    let url = std::env::var("LABELREST_TEST_PG").ok().filter(|v| !v.is_empty());
    if url.is_none() {
        assert!(std::env::var_os("CI").is_none(), "CI: LABELREST_TEST_PG is not set; .ci/run starts a PostgreSQL server for these tests");
        eprintln!("LABELREST_TEST_PG not set (no PostgreSQL here): {what} skipped");
    }
    url
}

/// The count of labelled rows in a workstation's header ("· N labelled").
pub fn labelled_count(screen: &str) -> Option<usize> {
    let head = screen.lines().next()?;
    let at = head.find(" labelled")?;
    head[..at].rsplit(' ').next()?.replace(',', "").parse().ok()
}

/// A tmux server of its own, for the real binary in a terminal; the server
/// (and what runs in it) goes away when this is dropped.
pub struct Tmux {
    pub sock: String,
}

impl Tmux {
    /// None where tmux is not installed (on CI it must be: `.ci/run` installs it).
    pub fn new(dir: &Path) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "tmux is missing on CI: .ci/run installs it");
            eprintln!("tmux not installed; skipping");
            return None;
        }
        Some(Tmux { sock: dir.join("tmux.sock").to_str().unwrap().to_string() })
    }

    /// tmux with these arguments, on this server; its standard output.
    pub fn cmd(&self, args: &[&str]) -> String {
        let o = Command::new("tmux").arg("-S").arg(&self.sock).args(args).output().expect("tmux");
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// A detached window `name` of `w`x`h` running the shell command `cmd`.
    pub fn start(&self, name: &str, w: u16, h: u16, cmd: &str) {
        let (w, h) = (w.to_string(), h.to_string());
        // A server whose last session just ended is on its way out, and a
        // new session asked of it then fails ("server exited
        // unexpectedly"): asked again, a new server starts.
        let mut last = String::new();
        for _ in 0..10 {
            let o = Command::new("tmux")
                .arg("-S")
                .arg(&self.sock)
                .args(["new-session", "-d", "-s", name, "-x", &w, "-y", &h, cmd])
                .output()
                .unwrap();
            if o.status.success() {
                return;
            }
            last = String::from_utf8_lossy(&o.stderr).to_string();
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        panic!("tmux new-session {name}: {last}");
    }

    pub fn keys(&self, name: &str, key: &str) {
        self.cmd(&["send-keys", "-t", name, key]);
    }

    pub fn screen(&self, name: &str) -> String {
        self.cmd(&["capture-pane", "-p", "-t", name])
    }

    /// The screen once it shows every one of `what` (a failure after `secs`).
    pub fn wait(&self, name: &str, what: &[&str], secs: u64) -> String {
        let start = std::time::Instant::now();
        loop {
            let s = self.screen(name);
            if what.iter().all(|w| s.contains(w)) {
                return s;
            }
            if start.elapsed() > std::time::Duration::from_secs(secs) {
                panic!("waited {secs}s for {what:?}; screen:\n{s}");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-S", &self.sock, "kill-server"]).output();
    }
}
