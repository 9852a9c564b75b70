//! The command line as its neighbours behave: completions and man pages,
//! --quiet and --verbose on every subcommand, exit codes (0 ok, 1 error,
//! 2 usage), `sessions --json`, and NO_COLOR / CLICOLOR_FORCE.

mod common;
use common::*;
use std::process::Output;

const ESC: u8 = 0x1b;

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let d = tempfile::tempdir().unwrap();
    for (shell, marker) in [("bash", "complete -F _labelrest"), ("zsh", "#compdef labelrest"), ("fish", "complete -c labelrest")] {
        let o = labelrest(d.path(), &["completions", shell]);
        assert_eq!(code(&o), 0, "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(script.contains(marker), "{shell}: no '{marker}'");
        for sub in ["new", "sessions", "export", "completions", "man"] {
            assert!(script.contains(sub), "{shell}: no subcommand {sub}");
        }
        // (fish writes `-l quiet`)
        for flag in ["quiet", "verbose", "json", "label-studio"] {
            assert!(script.contains(flag), "{shell}: no {flag}");
        }
    }
    // The bash script is valid bash.
    let o = labelrest(d.path(), &["completions", "bash"]);
    let f = write(d.path(), "labelrest.bash", &o.stdout);
    let check = std::process::Command::new("bash").arg("-n").arg(&f).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    // An unknown shell is a usage error.
    let o = labelrest(d.path(), &["completions", "tcsh"]);
    assert_eq!(code(&o), 2);
}

#[test]
fn man_page_on_stdout_or_one_per_subcommand() {
    let d = tempfile::tempdir().unwrap();
    let o = labelrest(d.path(), &["man"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let page = stdout(&o);
    assert!(page.contains(".TH labelrest 1"), "{page}");
    assert!(page.contains(".SH NAME") && page.contains(".SH SYNOPSIS") && page.contains(".SH SUBCOMMANDS"), "{page}");
    // Exit codes and the environment in the sections man pages keep them
    // in, one tagged entry each (not lines run together under "EXTRA").
    assert!(page.contains(".SH \"EXIT STATUS\"") && page.contains(".SH ENVIRONMENT") && !page.contains(".SH EXTRA"), "{page}");
    assert!(page.contains(".TP\n\\fBNO_COLOR\\fR\nset and not empty"), "{page}");
    let dir = d.path().join("man");
    let o = labelrest(d.path(), &["man", "--out", dir.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for f in ["labelrest.1", "labelrest-new.1", "labelrest-export.1", "labelrest-sessions.1", "labelrest-sessions-rm.1", "labelrest-man.1"]
    {
        let t = std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        let title = format!(".TH {} 1", f.trim_end_matches(".1"));
        assert!(t.contains(&title), "{f}: no '{title}'");
    }
    assert!(std::fs::read_to_string(dir.join("labelrest-export.1")).unwrap().contains("\\-\\-format"));
    assert!(std::fs::read_to_string(dir.join("labelrest-export.1")).unwrap().contains(".SH ENVIRONMENT"));
    assert!(stdout(&o).contains("man pages to"), "{}", stdout(&o));
    // groff reads the page without a warning, where it is installed.
    if let Ok(g) = std::process::Command::new("groff").args(["-man", "-Tutf8", "-ww", "-z"]).arg(dir.join("labelrest-export.1")).output() {
        assert!(g.status.success() && g.stderr.is_empty(), "{}", String::from_utf8_lossy(&g.stderr));
    }
    // --out on a file: a usage error, one line.
    let f = write(d.path(), "file", b"x");
    let o = labelrest(d.path(), &["man", "--out", f.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
}

#[test]
fn quiet_and_verbose_are_global() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "a.csv", demo_head(20).as_bytes());
    let f = f.to_str().unwrap();
    // Normal: a summary line.
    let o = labelrest(d.path(), &["new", "a", "--data", f, "--label-col", "label"]);
    assert!(o.status.success() && stdout(&o).contains("session 'a'"), "{}", stdout(&o));
    // --quiet, before or after the subcommand, in short or long: nothing on stdout.
    for args in [
        vec!["--quiet", "new", "b", "--data", f, "--label-col", "label"],
        vec!["new", "c", "--data", f, "--label-col", "label", "-q"],
        vec!["sessions", "rm", "c", "--yes", "--quiet"],
    ] {
        let o = labelrest(d.path(), &args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{args:?}");
        assert_eq!(stderr(&o), "", "{args:?}");
    }
    assert!(labelrest::store::exists(d.path(), "b").unwrap() && !labelrest::store::exists(d.path(), "c").unwrap());
    // What a command is for is printed under --quiet too.
    let o = labelrest(d.path(), &["sessions", "-q"]);
    assert!(stdout(&o).contains("a ") && stdout(&o).contains("b "), "{}", stdout(&o));
    // --verbose: the log's lines on stderr as well (the sessions folder, the input's format).
    let o = labelrest_env(d.path(), &["new", "v", "--data", f, "--label-col", "label", "--verbose"], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("sessions folder") && e.contains("DEBUG"), "{e}");
    assert!(stdout(&o).contains("session 'v'"));
    let o = labelrest_env(d.path(), &["-v", "sessions"], &[]);
    assert!(stderr(&o).contains("sessions folder"), "{}", stderr(&o));
    // Without it, stderr stays empty on success.
    let o = labelrest_env(d.path(), &["sessions"], &[]);
    assert_eq!(stderr(&o), "");
    // Both at once: a usage error.
    let o = labelrest(d.path(), &["-q", "-v", "sessions"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
}

#[test]
fn exit_codes_ok_error_usage() {
    let d = tempfile::tempdir().unwrap();
    let good = write(d.path(), "a.csv", b"text\none\ntwo\n");
    let good = good.to_str().unwrap();
    let bad = write(d.path(), "bad.csv", b"text,label\n\"one,a\ntwo,b\nthree,c\n");
    let odd = write(d.path(), "a.xlsx", b"text\none\n");
    assert_eq!(code(&labelrest(d.path(), &["new", "ok", "--data", good, "--labels", "a,b"])), 0);
    let one_line = |o: &Output| {
        assert_eq!(stderr(o).trim().lines().count(), 1, "one line: {}", stderr(o));
        assert!(stderr(o).starts_with("error: "), "{}", stderr(o));
    };
    // 2: clap's own usage errors ...
    for args in [
        vec!["frobnicate"],
        vec!["export", "ok"],
        vec!["new", "x", "--data", good, "--nope"],
        vec![],
        // Settings that could only fail later, or be changed without a word.
        vec!["new", "x", "--data", good, "--labels", "a,b", "--ft-lr", "nan"],
        vec!["new", "x", "--data", good, "--labels", "a,b", "--ft-lr=-5"],
        vec!["new", "x", "--data", good, "--labels", "a,b", "--ft-epochs", "0"],
        vec!["new", "x", "--data", good, "--labels", "a,b", "--batch", "0"],
        vec!["simulate", "--train", good, "--test", good, "--out", "o", "--pace", "0"],
        vec!["simulate", "--train", good, "--test", good, "--out", "o", "--seeds", "0"],
        vec!["simulate", "--train", good, "--test", good, "--out", "o", "--max-labels", "0"],
        // A NaN or negative pull would end in "the head has non-finite weights" mid-run.
        vec!["simulate", "--train", good, "--test", good, "--out", "o", "--head-anchor-fade", "nan"],
        vec!["simulate", "--train", good, "--test", good, "--out", "o", "--head-anchor=-1"],
        vec!["simulate", "--train", good, "--test", good, "--out", "o", "--zero-shot-odds", "nan"],
        vec!["simulate", "--train", good, "--test", good, "--out", "o", "--zero-shot-odds=-3"],
        vec!["simulate", "--train", good, "--test", good, "--out", "o", "--zero-shot-odds", "1e39"],
        vec!["bench", "team", "--labels", "0"],
        vec!["bench", "team", "--annotators", "1,0"],
    ] {
        let o = labelrest(d.path(), &args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("error: "), "{args:?}: {}", stderr(&o));
    }
    // ... and ours, in one line.
    for args in [
        vec!["new", "../x", "--data", good, "--labels", "a,b"],
        vec!["new", "x", "--data", good, "--labels", "a,,b"],
        vec!["new", "x", "--data", odd.to_str().unwrap(), "--labels", "a,b"],
        vec!["export", "ok", "--out", "labels.xml"],
        vec!["export", "ok", "--out", "labels"],
        vec!["export", "ok", "--out", "labels.csv", "--min-confidence", "1.5"],
        vec!["export", "ok", "--out", "labels.jsonl", "--spreadsheet-safe"],
        vec!["export", "nosuch", "--out", "labels.xml"],
        vec!["predict", "ok", "--input", odd.to_str().unwrap(), "--out", "p.csv"],
        vec!["predict", "nosuch", "--input", good, "--out", "p.xml"],
        vec!["simulate", "--train", good, "--test", good, "--out", "o", "--strategy", "margin,best"],
        vec!["simulate", "--train", good, "--test", good, "--out", "o", "--noise", "1.5"],
        // A blank name, or spaces at its ends: `sessions` would list a name that names nothing.
        vec!["new", " x", "--data", good, "--labels", "a,b"],
        vec!["new", "  ", "--data", good, "--labels", "a,b"],
    ] {
        let o = labelrest(d.path(), &args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        one_line(&o);
    }
    // 1: errors: a missing session, bad input, a missing file.
    for args in [
        vec!["export", "nosuch", "--out", "labels.csv"],
        vec!["retrain", "nosuch"],
        vec!["sessions", "rm", "nosuch", "--yes"],
        vec!["new", "x", "--data", bad.to_str().unwrap(), "--label-col", "label"],
        vec!["new", "x", "--data", "missing.csv", "--labels", "a,b"],
        vec!["new", "ok", "--data", good, "--labels", "a,b"],
        // The label set would come from a first pass over a pipe.
        vec!["new", "x", "--data", "/dev/null", "--format", "csv", "--label-col", "label"],
    ] {
        let o = labelrest(d.path(), &args);
        assert_eq!(code(&o), 1, "{args:?}: {}", stderr(&o));
        one_line(&o);
    }
    let o = labelrest(d.path(), &["new", "x", "--data", "/dev/null", "--format", "csv", "--label-col", "label"]);
    assert!(stderr(&o).contains("/dev/null: not a regular file (a pipe?)"), "{}", stderr(&o));
    // simulate: a label of the data that the labels file lacks is named with its place.
    let gold = write(
        d.path(),
        "gold.csv",
        b"text,label
one,a
two,c
",
    );
    let lf = write(d.path(), "labels.txt", b"a\nb\n");
    let o = labelrest(
        d.path(),
        &[
            "simulate",
            "--train",
            gold.to_str().unwrap(),
            "--test",
            gold.to_str().unwrap(),
            "--labels-file",
            lf.to_str().unwrap(),
            "--out",
            "o",
        ],
    );
    assert_eq!(code(&o), 1);
    one_line(&o);
    assert!(stderr(&o).contains("gold.csv:3: label 'c' is not in"), "{}", stderr(&o));
    // 0: --help and --version.
    assert_eq!(code(&labelrest(d.path(), &["--help"])), 0);
    assert_eq!(code(&labelrest(d.path(), &["--version"])), 0);
    assert!(stdout(&labelrest(d.path(), &["--help"])).contains("Exit status"));
}

#[test]
fn sessions_as_json() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path().join("sessions");
    let o = labelrest(&s, &["sessions", "--json"]);
    assert_eq!(code(&o), 0);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(), serde_json::json!([]));
    small_demo_session(&s, "alpha", 30);
    small_demo_session(&s, "beta", 12);
    {
        let b = labelrest::store::Session::open(&s, "beta").unwrap();
        b.add_label(1, 0, 0, None).unwrap();
        b.add_label(2, 1, 0, None).unwrap();
    }
    // A damaged one is listed with its reason.
    std::fs::create_dir_all(s.join("broken")).unwrap();
    std::fs::write(s.join("broken/session.db"), b"not a database at all, just some bytes to fill a page").unwrap();
    let o = labelrest_env(&s, &["sessions", "--json"], &[("CLICOLOR_FORCE", "1")]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!o.stdout.contains(&ESC), "JSON is never coloured");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 3);
    let names: Vec<&str> = a.iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["alpha", "beta", "broken"]);
    assert_eq!(a[0]["rows"], 30);
    assert_eq!(a[0]["labelled"], 0);
    assert_eq!(a[0]["iterations"], 0);
    assert!(a[0]["error"].is_null() && a[0]["open_by_pid"].is_null());
    assert!(a[0]["path"].as_str().unwrap().ends_with("alpha"));
    // alpha was never opened to work on since `new`; beta was.
    assert!(a[0]["last_opened"].is_null(), "{}", a[0]);
    assert!(a[1]["last_opened"].as_str().unwrap().len() >= 20);
    assert_eq!(a[1]["rows"], 12);
    assert_eq!(a[1]["labelled"], 2);
    assert!(a[2]["rows"].is_null());
    assert!(!a[2]["error"].as_str().unwrap().is_empty());
    // The same facts as the table.
    let table = stdout(&labelrest_env(&s, &["sessions"], &[]));
    for x in a {
        assert!(table.contains(x["name"].as_str().unwrap()), "{table}");
        assert!(table.contains(x["path"].as_str().unwrap()), "{table}");
    }
    assert!(table.lines().any(|l| l.starts_with("beta") && l.contains(" 12 ") && l.contains(" 2 ")), "{table}");
    assert!(table.contains(a[2]["error"].as_str().unwrap()), "{table}");
    assert!(table.lines().any(|l| l.starts_with("alpha") && l.contains(" never ")), "{table}");
    // A session open in the workstation (its lock held) names the process.
    let held = labelrest::store::Session::open(&s, "alpha").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&labelrest(&s, &["sessions", "--json"]).stdout).unwrap();
    assert_eq!(v[0]["open_by_pid"], std::process::id());
    drop(held);
    // --json is for the listing only.
    assert_eq!(code(&labelrest(&s, &["sessions", "--json", "rm", "alpha"])), 2);
}

#[test]
fn no_color_and_clicolor_force() {
    let d = tempfile::tempdir().unwrap();
    small_demo_session(d.path(), "s", 10);
    let err = ["export", "nosuch", "--out", "x.csv"];
    // Piped: no colour ...
    let o = labelrest_env(d.path(), &err, &[]);
    assert!(!o.stderr.contains(&ESC), "{}", stderr(&o));
    // ... unless forced ...
    let o = labelrest_env(d.path(), &err, &[("CLICOLOR_FORCE", "1")]);
    assert!(stderr(&o).starts_with("\x1b[1;31merror:\x1b[0m "), "{:?}", stderr(&o));
    assert_eq!(code(&o), 1);
    // ... and never under NO_COLOR, which wins.
    let o = labelrest_env(d.path(), &err, &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(!o.stderr.contains(&ESC) && stderr(&o).starts_with("error: "), "{:?}", stderr(&o));
    // The sessions table, the log lines of --verbose and clap's own messages follow the same rule.
    for (args, out_or_err) in [(vec!["sessions"], true), (vec!["-v", "sessions"], false), (vec!["sessions", "--nope"], false)] {
        let forced = labelrest_env(d.path(), &args, &[("CLICOLOR_FORCE", "1")]);
        let text = |o: &Output| if out_or_err { o.stdout.clone() } else { o.stderr.clone() };
        assert!(text(&forced).contains(&ESC), "{args:?} forced: {:?}", String::from_utf8_lossy(&text(&forced)));
        let off = labelrest_env(d.path(), &args, &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
        assert!(!text(&off).contains(&ESC), "{args:?} NO_COLOR: {:?}", String::from_utf8_lossy(&text(&off)));
        let plain = labelrest_env(d.path(), &args, &[]);
        assert!(!text(&plain).contains(&ESC), "{args:?} piped: {:?}", String::from_utf8_lossy(&text(&plain)));
        let zero = labelrest_env(d.path(), &args, &[("CLICOLOR_FORCE", "0")]);
        assert!(!text(&zero).contains(&ESC), "{args:?} CLICOLOR_FORCE=0: {:?}", String::from_utf8_lossy(&text(&zero)));
    }
}

/// `--model owner/name` finds the model in the local Hugging Face cache
/// (no network): the snapshot `refs/main` names; a name not there gets one
/// line that says where it looked.
#[test]
fn a_model_by_name_from_the_local_hugging_face_cache() {
    let d = tempfile::tempdir().unwrap();
    let hf = d.path().join("hf");
    let repo = hf.join("hub/models--sentence-transformers--all-MiniLM-L6-v2");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd\n").unwrap();
    // As the hub lays it out: a snapshot folder of links (to blobs; here to the bundled files).
    let snap = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    for e in std::fs::read_dir(root().join("assets/models/all-MiniLM-L6-v2")).unwrap() {
        let e = e.unwrap();
        std::os::unix::fs::symlink(e.path(), snap.join(e.file_name())).unwrap();
    }
    let data = write(d.path(), "d.csv", b"text\nmy card was declined\nwhere is my transfer\n");
    let env = [("HF_HOME", hf.to_str().unwrap()), ("HOME", d.path().to_str().unwrap())];
    let with_cache = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_labelrest"));
        c.arg("--sessions").arg(d.path().join("s")).args(args).env("LABELREST_LOG", d.path().join("log"));
        for v in ["HF_HUB_CACHE", "XDG_CACHE_HOME"] {
            c.env_remove(v);
        }
        c.envs(env).output().unwrap()
    };
    let o = with_cache(&[
        "new",
        "byname",
        "--data",
        data.to_str().unwrap(),
        "--labels",
        "card,transfer",
        "--model",
        "sentence-transformers/all-MiniLM-L6-v2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = labelrest::store::Session::open_read_only(&d.path().join("s"), "byname").unwrap();
    assert!(s.settings().unwrap().model.ends_with("snapshots/0123abcd"), "{}", s.settings().unwrap().model);
    drop(s);
    // The model works: a retrain embeds with it.
    let o = with_cache(&["retrain", "byname"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Not in the cache: one line naming where it looked.
    let o = with_cache(&["new", "missing", "--data", data.to_str().unwrap(), "--labels", "a,b", "--model", "nobody/nothing"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("nobody/nothing") && e.contains(&hf.join("hub").display().to_string()) && e.lines().count() == 1, "{e}");
    // A path that is not there is named as a folder.
    let o = with_cache(&["new", "missing", "--data", data.to_str().unwrap(), "--labels", "a,b", "--model", "./no/such/folder"]);
    assert!(!o.status.success() && stderr(&o).contains("no model folder"), "{}", stderr(&o));
}

/// Every label records who gave it (`--annotator`, else the login name):
/// in the export's annotator column and in `stats`.
#[test]
fn labels_record_their_annotator() {
    let d = tempfile::tempdir().unwrap();
    small_demo_session(d.path(), "team", 30);
    let annotate = |who: Option<&str>, lines: &str| {
        let args: Vec<&str> = who.map(|w| vec!["--annotator", w]).unwrap_or_default();
        annotate(d.path(), "team", &args, &[("USER", Some("bob"))], lines)
    };
    let names: Vec<String> =
        labelrest::store::Session::open_read_only(d.path(), "team").unwrap().label_set().unwrap().into_iter().map(|l| l.name).collect();
    let o = annotate(Some("alice"), &format!("1\t{}\n2\t{}\n3\t{}\n", names[0], names[1], names[0]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = annotate(None, &format!("4\t{}\n", names[1]));
    assert!(o.status.success(), "{}", stderr(&o));
    // A bad name is a usage error, before anything is written.
    let o = annotate(Some(" "), &format!("5\t{}\n", names[1]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let out = d.path().join("x.csv");
    assert!(labelrest(d.path(), &["export", "team", "--out", out.to_str().unwrap()]).status.success());
    // An ordinary file, as the umask allows (not the temporary file's 0600).
    let umask = unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m as u32
    };
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o644 & !umask);
    let by_id: std::collections::HashMap<String, String> = csv::Reader::from_path(&out)
        .unwrap()
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[6].to_string())
        })
        .collect();
    assert_eq!(by_id["1"], "alice");
    assert_eq!(by_id["3"], "alice");
    assert_eq!(by_id["4"], "bob", "the login name by default");
    assert_eq!(by_id["5"], "", "not labelled");
    // A name a spreadsheet would run is made inert like any other cell.
    assert!(annotate(Some("=cmd"), &format!("6\t{}\n", names[0])).status.success());
    let safe = d.path().join("safe.csv");
    assert!(labelrest(d.path(), &["export", "team", "--out", safe.to_str().unwrap(), "--spreadsheet-safe"]).status.success());
    assert!(std::fs::read_to_string(&safe).unwrap().contains(",'=cmd"), "the annotator cell is quoted");
    let o = labelrest(d.path(), &["stats", "team", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["labels"], 5);
    let who: Vec<(String, i64)> = v["annotators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["annotator"].as_str().unwrap_or("").to_string(), a["labels"].as_i64().unwrap()))
        .collect();
    assert_eq!(who, vec![("alice".to_string(), 3), ("=cmd".to_string(), 1), ("bob".to_string(), 1)]);
    let o = labelrest(d.path(), &["stats", "team"]);
    assert!(stdout(&o).contains("alice") && stdout(&o).contains("5 labels"), "{}", stdout(&o));
    // Each table's counts line up, whatever the names' lengths.
    let out = stdout(&o);
    for table in out.split("\n\n") {
        let widths: Vec<usize> =
            table.lines().filter(|l| !l.contains("labels in session") && !l.starts_with("held out:")).map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{out}");
    }
}

/// `demo --reset` never throws labels away unasked: without a terminal to
/// confirm on, it refuses and the labels stay.
#[test]
fn demo_reset_does_not_drop_labels_unasked() {
    let d = tempfile::tempdir().unwrap();
    // Without a terminal the workstation refuses, but the demo session is made.
    let o = labelrest(d.path(), &["demo"]);
    assert!(!o.status.success() && stderr(&o).contains("needs a terminal"), "{}", stderr(&o));
    // A session that does not exist is named as such, terminal or not.
    let o = labelrest(d.path(), &["label", "nosuch"]);
    assert!(!o.status.success() && stderr(&o).contains("no session 'nosuch'"), "{}", stderr(&o));
    let names: Vec<String> =
        labelrest::store::Session::open_read_only(d.path(), "demo").unwrap().label_set().unwrap().into_iter().map(|l| l.name).collect();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_labelrest"));
    c.arg("--sessions").arg(d.path()).args(["annotate", "demo"]).env("LABELREST_LOG", d.path().join("log"));
    let mut child = c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), format!("1\t{}\n", names[0]).as_bytes()).unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let o = labelrest(d.path(), &["demo", "--reset"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("would delete the demo session's 1 labels"), "{}", stderr(&o));
    assert_eq!(labelrest::store::Session::open_read_only(d.path(), "demo").unwrap().labels().unwrap().len(), 1);
}

/// `new` counts the texts longer than the model reads (the bundled one: 256
/// tokens) in its summary and the log; they are embedded from their start.
#[test]
fn new_counts_the_texts_the_model_truncates() {
    let d = tempfile::tempdir().unwrap();
    let long = "word ".repeat(300);
    let longer = "another word ".repeat(200);
    let csv = format!("text\nshort one\n{long}\nalso short\n{longer}\n");
    let data = write(d.path(), "long.csv", csv.as_bytes());
    let o = labelrest(d.path(), &["new", "long", "--data", data.to_str().unwrap(), "--labels", "a,b"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("2 texts longer than the model's 256 tokens"), "{}", stdout(&o));
    let log = std::fs::read_to_string(d.path().join("test.log")).unwrap();
    assert!(log.contains("2 texts longer than the model's 256 tokens"), "{log}");
    // None long: nothing said.
    let data = write(d.path(), "short.csv", b"text\nshort one\nalso short\n");
    let o = labelrest(d.path(), &["new", "short", "--data", data.to_str().unwrap(), "--labels", "a,b"]);
    assert!(o.status.success() && !stdout(&o).contains("longer than"), "{}", stdout(&o));
}

/// Without USER and LOGNAME (cron, containers), a label's annotator is the
/// login name of the user the process runs as, as `id -un` says it.
#[test]
fn the_annotator_defaults_to_the_login_name() {
    let d = tempfile::tempdir().unwrap();
    small_demo_session(d.path(), "who", 5);
    let names: Vec<String> =
        labelrest::store::Session::open_read_only(d.path(), "who").unwrap().label_set().unwrap().into_iter().map(|l| l.name).collect();
    let o = annotate(d.path(), "who", &[], &[("USER", None), ("LOGNAME", None)], &format!("1\t{}\n", names[0]));
    assert!(o.status.success(), "{}", stderr(&o));
    let id = std::process::Command::new("id").arg("-un").output().unwrap();
    let want = if id.status.success() { String::from_utf8_lossy(&id.stdout).trim().to_string() } else { "unknown".to_string() };
    let per = labelrest::store::Session::open_read_only(d.path(), "who").unwrap().labels_per_annotator().unwrap();
    assert!(per.iter().any(|(a, _, n)| a.as_deref() == Some(want.as_str()) && *n == 1), "{per:?} (want {want})");
}

/// A `label` column is read only with --label-col: without it, `new` says
/// one note line that it was found and not read (not under --quiet), and
/// imports the rows as before, with no seed labels.
#[test]
fn new_notes_a_label_column_it_does_not_read() {
    let d = tempfile::tempdir().unwrap();
    let csv = write(d.path(), "tickets.csv", b"text,label\nmy invoice is wrong,billing\napp crashes,\nhow do I log in,question\n");
    let csv = csv.to_str().unwrap();
    let jsonl =
        write(d.path(), "tickets.jsonl", b"{\"text\": \"my invoice is wrong\", \"label\": \"billing\"}\n{\"text\": \"app crashes\"}\n");
    let jsonl = jsonl.to_str().unwrap();
    for (name, data) in [("csv", csv), ("jsonl", jsonl)] {
        let o = labelrest(d.path(), &["new", name, "--data", data, "--labels", "billing,bug,question"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(stderr(&o), "", "a note, not an error");
        let out = stdout(&o);
        let notes: Vec<&str> = out.lines().filter(|l| l.starts_with("note:")).collect();
        assert_eq!(notes.len(), 1, "{out}");
        assert!(
            notes[0].contains("column named 'label'") && notes[0].contains("--label-col label reads it as seed labels"),
            "{}",
            notes[0]
        );
        let s = labelrest::store::Session::open_read_only(d.path(), name).unwrap();
        assert_eq!(s.labels().unwrap().len(), 0, "{name}: not read");
    }
    // --quiet: nothing.
    let o = labelrest(d.path(), &["-q", "new", "quiet", "--data", csv, "--labels", "billing,bug,question"]);
    assert!(o.status.success() && stdout(&o).is_empty(), "{}", stdout(&o));
    // Read with --label-col, or no such column: no note.
    let o = labelrest(d.path(), &["new", "read", "--data", csv, "--labels", "billing,bug,question", "--label-col", "label"]);
    assert!(o.status.success() && !stdout(&o).contains("note:"), "{}", stdout(&o));
    assert!(stdout(&o).contains("2 seed labels"), "{}", stdout(&o));
    let plain = write(d.path(), "plain.csv", b"text,other\none,x\ntwo,y\n");
    let o = labelrest(d.path(), &["new", "plain", "--data", plain.to_str().unwrap(), "--labels", "a,b"]);
    assert!(o.status.success() && !stdout(&o).contains("note:"), "{}", stdout(&o));
}

/// Declining `demo --reset` is an answer, not an error (as `sessions rm`):
/// the demo and its labels are kept, and the demo is not opened.
#[test]
fn declining_the_demo_reset_keeps_it_and_is_no_error() {
    let d = tempfile::tempdir().unwrap();
    let store = labelrest::store::Store { local: d.path().to_path_buf(), pg: None };
    let never = |_: usize| -> anyhow::Result<bool> { panic!("nothing to delete: not asked") };
    assert_eq!(labelrest::cli::ensure_demo_asking(&store, false, never).unwrap().as_deref(), Some("demo"));
    let names: Vec<String> =
        labelrest::store::Session::open_read_only(d.path(), "demo").unwrap().label_set().unwrap().into_iter().map(|l| l.name).collect();
    let o = annotate(d.path(), "demo", &[], &[], &format!("1\t{}\n", names[0]));
    assert!(o.status.success(), "{}", stderr(&o));
    let labels = || labelrest::store::Session::open_read_only(d.path(), "demo").unwrap().labels().unwrap().len();
    // No: kept, nothing to open, no error.
    let mut asked = None;
    let r = labelrest::cli::ensure_demo_asking(&store, true, |n| {
        asked = Some(n);
        Ok(false)
    });
    assert_eq!(asked, Some(1), "asked about its one label");
    assert_eq!(r.unwrap(), None);
    assert_eq!(labels(), 1);
    // Yes: afresh.
    assert_eq!(labelrest::cli::ensure_demo_asking(&store, true, |_| Ok(true)).unwrap().as_deref(), Some("demo"));
    assert_eq!(labels(), 0);
}

/// `export --help` gives the CSV's columns as the exporter writes them.
#[test]
fn export_help_names_the_csv_header_written() {
    let d = tempfile::tempdir().unwrap();
    small_demo_session(d.path(), "e", 5);
    let out = d.path().join("e.csv");
    let o = labelrest(d.path(), &["export", "e", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let written = std::fs::read_to_string(&out).unwrap();
    let header = written.lines().next().unwrap();
    let help = stdout(&labelrest(d.path(), &["export", "--help"]));
    assert!(help.contains(&format!("`{header}`")), "{header} not in:\n{help}");
}

/// Every argument of these subcommands says in `--help` what it is.
#[test]
fn arguments_have_a_description() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if a.get_help().is_none() && a.get_long_help().is_none() {
                missing.push(format!("{path} {}", a.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let cmd = <labelrest::cli::Cli as clap::CommandFactory>::command();
    let mut missing = Vec::new();
    for sub in cmd.get_subcommands() {
        walk(sub, sub.get_name(), &mut missing);
    }
    assert!(missing.is_empty(), "no description: {missing:?}");
}

/// `annotate` names the label set when a label is not in it, as `new` does.
#[test]
fn annotate_lists_the_label_set_for_an_unknown_label() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "t.csv", b"text,label\nmy invoice,billing\nit crashes,feature\n");
    let o = labelrest(d.path(), &["new", "t", "--data", f.to_str().unwrap(), "--labels", "billing,bug", "--label-col", "label"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("label 'feature' is not in the label set (billing, bug)"), "{}", stderr(&o));
    let o = labelrest(d.path(), &["new", "t", "--data", f.to_str().unwrap(), "--labels", "billing,bug"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = annotate(d.path(), "t", &[], &[], "1\tfeature\n");
    assert_eq!(code(&o), 1);
    assert_eq!(stderr(&o).trim(), "error: <stdin>:1: label 'feature' is not in the label set (billing, bug)");
    // A row that is not there names the line too (the lines before it are on disk).
    let o = annotate(d.path(), "t", &[], &[], "1\tbilling\n99999\tbug\n");
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o), "ok 1\n");
    assert!(stderr(&o).starts_with("error: <stdin>:2: ") && stderr(&o).contains("no row 99999 in session 't'"), "{}", stderr(&o));
    // A line that is not UTF-8 names its line (the lines before it are on disk).
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_labelrest"));
    c.arg("--sessions").arg(d.path()).args(["annotate", "t"]).env("LABELREST_LOG", d.path().join("test.log"));
    let mut child =
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"2\tbug\n1\tb\xffg\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o), "ok 2\n");
    assert_eq!(stderr(&o).trim(), "error: <stdin>:2: not UTF-8");
    // A byte-order mark before the first line is not part of it.
    let o = annotate(d.path(), "t", &[], &[], "\u{feff}1\tbug\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ok 1"), "{}", stdout(&o));
}

/// `annotate` says when a label replaced the row's earlier one: which,
/// and whose, so a client that labels a row twice by mistake sees it.
#[test]
fn annotate_says_when_a_label_replaces_one() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "t.csv", b"text\nmy invoice\nit crashes\n");
    let o = labelrest(d.path(), &["new", "t", "--data", f.to_str().unwrap(), "--labels", "billing,bug"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = annotate(d.path(), "t", &["--annotator", "alice"], &[], "1\tbilling\n2\tbug\n1\tbug\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "ok 1\nok 2\nok 1\treplaced\tbilling\talice\n");
    // Another annotator's label on a row not sent to two is replaced too, and named.
    let o = annotate(d.path(), "t", &["--annotator", "bob"], &[], "2\tbilling\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "ok 2\treplaced\tbug\talice\n");
    // The same label again (a client resending after a crash, or another
    // annotator confirming it) changes no label: plain `ok`.
    let o = annotate(d.path(), "t", &["--annotator", "bob"], &[], "2\tbilling\n");
    assert_eq!(stdout(&o), "ok 2\n");
    let o = annotate(d.path(), "t", &["--annotator", "alice"], &[], "2\tbilling\n");
    assert_eq!(stdout(&o), "ok 2\n");
}

/// A missing input is named in the same words by `predict` as by `new`.
#[test]
fn predict_and_new_say_a_missing_input_alike() {
    let d = tempfile::tempdir().unwrap();
    small_demo_session(d.path(), "p", 5);
    let missing = d.path().join("nope.csv");
    let missing = missing.to_str().unwrap();
    let want = format!("error: {missing}: no such file");
    let o = labelrest(d.path(), &["new", "x", "--data", missing, "--labels", "a,b"]);
    assert_eq!((code(&o), stderr(&o).trim()), (1, want.as_str()));
    let out = d.path().join("out.csv");
    let o = labelrest(d.path(), &["predict", "p", "--input", missing, "--out", out.to_str().unwrap()]);
    assert_eq!((code(&o), stderr(&o).trim()), (1, want.as_str()));
}

/// A store that cannot be reached is said to be so, not taken for one
/// without the session.
#[test]
fn an_unreachable_store_is_not_an_empty_one() {
    let d = tempfile::tempdir().unwrap();
    let o = labelrest(d.path(), &["--store", "postgres://u@127.0.0.1:1/db", "sessions", "rm", "x"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("cannot connect to the store") && !stderr(&o).contains("no session"), "{}", stderr(&o));
}

/// Inputs that are odd but ordinary: a file name that is not UTF-8, a
/// labels file saved with a byte-order mark, a label that holds an
/// invisible character, a panic in a command whose output a script reads,
/// and an estimate made from labels that use only part of the set.
#[test]
fn odd_but_ordinary_inputs() {
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().unwrap();
    let sessions = d.path().join("sessions");
    let csv = b"text,label\nthe card is lost,a\nwhere is my refund,a\nhello there,a\nthe app crashed,b\n";
    // A file name that is not UTF-8 (ordinary on Linux): no panic.
    let odd = d.path().join(std::ffi::OsStr::from_bytes(b"d\xff.csv"));
    std::fs::write(&odd, csv).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_labelrest"))
        .arg("--sessions")
        .arg(&sessions)
        .args(["new", "odd", "--label-col", "label", "--data"])
        .arg(&odd)
        .env("LABELREST_LOG", d.path().join("log"))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // A labels file with a byte-order mark: its first label is 'a', not '\u{feff}a'.
    let data = write(d.path(), "d.csv", csv);
    let labels = write(d.path(), "labels.txt", "\u{feff}a\tthe first\nb\n".as_bytes());
    let o = labelrest(
        &sessions,
        &["new", "bom", "--data", data.to_str().unwrap(), "--labels-file", labels.to_str().unwrap(), "--label-col", "label"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s = labelrest::store::Session::open_read_only(&sessions, "bom").unwrap();
    assert_eq!(s.label_set().unwrap().iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    drop(s);
    // A label with a zero-width space is drawn like another, and could never be typed.
    // (The zero-width non-joiner belongs to Persian words: kept.)
    let o = labelrest(
        &sessions,
        &["new", "fa", "--data", data.to_str().unwrap(), "--labels", "a,\u{645}\u{6cc}\u{200c}\u{62e}\u{648}\u{627}\u{647}\u{645}"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = labelrest(&sessions, &["new", "zw", "--data", data.to_str().unwrap(), "--labels", "a,\u{200b}b"]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("invisible characters"), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    // Labels that use one label of two: the estimate says what it cannot see.
    // (12 labels: the calibration starts at `MIN_LABELS`, 10.)
    let mut one = String::from("text,label\n");
    for i in 0..12 {
        one.push_str(&format!("my card number {i} is lost,a\n"));
    }
    one.push_str("hello there,\nthe app crashed,\n");
    let one = write(d.path(), "one.csv", one.as_bytes());
    let o = labelrest(&sessions, &["new", "one", "--data", one.to_str().unwrap(), "--labels", "a,b", "--label-col", "label"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(code(&labelrest(&sessions, &["retrain", "one"])), 0);
    let out = d.path().join("one.csv.out.csv");
    let o = labelrest(&sessions, &["export", "one", "--out", out.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("note: your labels use 1 of the 2 labels") || stderr(&o).contains("note: your labels use 1 of the 2 labels"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    // Before any retrain, the export says how to get the model's labels.
    let o = labelrest(&sessions, &["new", "fresh", "--data", data.to_str().unwrap(), "--labels", "a,b"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = labelrest(&sessions, &["export", "fresh", "--out", d.path().join("fresh.csv").to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("note: no model has labelled the rows yet: `labelrest retrain fresh`"), "{}", stdout(&o));
    // A panic outside the workstation writes no terminal codes to the output a script reads.
    let o = labelrest_env(&sessions, &["retrain", "one"], &[("LABELREST_PANIC_AT", "iterate")]);
    assert!(stderr(&o).contains("internal error"), "{}", stderr(&o));
    assert!(!o.stdout.contains(&ESC) && !o.stderr.contains(&ESC), "{:?}\n{}", stdout(&o), stderr(&o));
}
