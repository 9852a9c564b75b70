//! Key bindings: the defaults, and a config file that changes them
//! (`keys.toml` in the platform config folder, or `$LABELREST_KEYS`).
//!
//! ```toml
//! # ~/.config/labelrest/keys.toml
//! [keys]
//! accept = ["Enter", "a"]
//! down = ["j", "Down", "n"]
//! quit = ["q"]
//! ```
//!
//! Actions: down, up, top, bottom, page-down, page-up, accept, picker,
//! skip, undo, retrain, next-view, strategy, export, filter, sort,
//! finetune, mode, help, quit. `1`-`9` always pick the n-th suggestion. A listed action keeps only
//! the keys given; the others keep their defaults.

use anyhow::{bail, Context, Result};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::app::Action;

pub const ACTIONS: &[(&str, &[&str])] = &[
    ("down", &["j", "Down"]),
    ("up", &["k", "Up"]),
    ("top", &["g", "Home"]),
    ("bottom", &["G", "End"]),
    ("page-down", &["PageDown", "Space"]),
    ("page-up", &["PageUp"]),
    ("accept", &["Enter", "a"]),
    ("picker", &["/", "l"]),
    ("skip", &["x"]),
    ("undo", &["u"]),
    ("retrain", &["r"]),
    ("next-view", &["Tab"]),
    ("strategy", &["s"]),
    ("export", &["e"]),
    ("filter", &["f"]),
    ("sort", &["c"]),
    ("finetune", &["F"]),
    ("mode", &["m"]),
    ("help", &["?"]),
    ("quit", &["q", "Esc"]),
];

fn action(name: &str) -> Option<Action> {
    Some(match name {
        "down" => Action::Down,
        "up" => Action::Up,
        "top" => Action::Top,
        "bottom" => Action::Bottom,
        "page-down" => Action::PageDown,
        "page-up" => Action::PageUp,
        "accept" => Action::Accept,
        "picker" => Action::OpenPicker,
        "skip" => Action::Skip,
        "undo" => Action::Undo,
        "retrain" => Action::Retrain,
        "next-view" => Action::NextView,
        "strategy" => Action::CycleStrategy,
        "export" => Action::Export,
        "filter" => Action::Filter,
        "sort" => Action::SortConfidence,
        "finetune" => Action::FineTune,
        "mode" => Action::CycleMode,
        "help" => Action::ToggleHelp,
        "quit" => Action::Quit,
        _ => return None,
    })
}

/// Parses a key name: one character, or Enter, Tab, Esc, Space, Backspace,
/// Up, Down, Left, Right, Home, End, PageUp, PageDown, F1-F12.
pub fn parse_key(s: &str) -> Option<KeyCode> {
    let mut chars = s.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return Some(KeyCode::Char(c));
    }
    Some(match s.to_ascii_lowercase().as_str() {
        "enter" | "return" => KeyCode::Enter,
        "tab" => KeyCode::Tab,
        "esc" | "escape" => KeyCode::Esc,
        "space" => KeyCode::Char(' '),
        "backspace" => KeyCode::Backspace,
        "up" => KeyCode::Up,
        "down" => KeyCode::Down,
        "left" => KeyCode::Left,
        "right" => KeyCode::Right,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "pageup" | "pgup" => KeyCode::PageUp,
        "pagedown" | "pgdn" => KeyCode::PageDown,
        f if f.starts_with('f') => KeyCode::F(f[1..].parse().ok().filter(|n| (1..=12).contains(n))?),
        _ => return None,
    })
}

#[derive(Debug, Clone)]
pub struct KeyMap {
    normal: HashMap<KeyCode, Action>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    keys: BTreeMap<String, Vec<String>>,
}

impl Default for KeyMap {
    fn default() -> Self {
        let mut normal = HashMap::new();
        for (name, keys) in ACTIONS {
            for k in *keys {
                normal.insert(parse_key(k).expect("default key"), action(name).expect("default action"));
            }
        }
        KeyMap { normal }
    }
}

impl KeyMap {
    /// The config file's path: `$LABELREST_KEYS`, else `keys.toml` in the platform config folder.
    pub fn path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("LABELREST_KEYS") {
            return Some(PathBuf::from(p));
        }
        directories::ProjectDirs::from("org", "labelrest", "labelrest").map(|d| d.config_dir().join("keys.toml"))
    }

    /// The defaults changed by the config file when there is one.
    pub fn load(path: Option<&Path>) -> Result<KeyMap> {
        let mut map = KeyMap::default();
        let Some(path) = path else { return Ok(map) };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(map),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let f: File = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
        for (name, keys) in f.keys {
            let Some(a) = action(&name) else {
                bail!(
                    "{}: unknown action '{name}'; the actions are: {}",
                    path.display(),
                    ACTIONS.iter().map(|a| a.0).collect::<Vec<_>>().join(", ")
                );
            };
            map.normal.retain(|_, v| *v != a);
            for k in keys {
                let code = parse_key(&k).ok_or_else(|| anyhow::anyhow!("{}: action '{name}': unknown key '{k}'", path.display()))?;
                if matches!(code, KeyCode::Char('1'..='9')) {
                    bail!("{}: action '{name}': keys 1-9 pick suggestions and cannot be bound", path.display());
                }
                map.normal.insert(code, a.clone());
            }
        }
        Ok(map)
    }

    /// The action of a key outside any overlay.
    pub fn normal(&self, k: &KeyEvent) -> Action {
        if let KeyCode::Char(c @ '1'..='9') = k.code {
            return Action::Pick(c as usize - '0' as usize);
        }
        if k.modifiers.contains(KeyModifiers::CONTROL) {
            return Action::None;
        }
        self.normal.get(&k.code).cloned().unwrap_or(Action::None)
    }

    /// The help screen's lines: keys and what they do.
    pub fn help(&self) -> Vec<(String, String)> {
        let k = |n: &str| self.keys_of(n).join(" ");
        vec![
            (format!("{} {}", k("down"), k("up")), "move".into()),
            (format!("{} {} {} {}", k("top"), k("bottom"), k("page-up"), k("page-down")), "top, bottom, page".into()),
            (k("accept"), "accept the prediction".into()),
            ("1-9".into(), "take the n-th suggestion".into()),
            (k("picker"), "label picker (type to filter)".into()),
            ("Tab (in picker)".into(), "edit the label's description".into()),
            (k("skip"), "skip the row for now".into()),
            (k("undo"), "undo the last decision".into()),
            (k("retrain"), "retrain now".into()),
            (k("next-view"), "queue / labelled / all rows".into()),
            (format!("{} {}", k("filter"), k("sort")), "all rows: filter by label, sort".into()),
            (k("strategy"), "next query strategy".into()),
            (k("export"), "export to NAME-labels.csv".into()),
            (k("mode"), "mode: head, finetune, contrastive".into()),
            (k("finetune"), "fine-tune the encoder now / cancel".into()),
            (k("quit"), "quit (all is saved)".into()),
        ]
    }

    /// The keys bound to an action, for the help screen.
    pub fn keys_of(&self, name: &str) -> Vec<String> {
        let Some(a) = action(name) else { return vec![] };
        let mut v: Vec<String> = self
            .normal
            .iter()
            .filter(|(_, x)| **x == a)
            .map(|(k, _)| match k {
                KeyCode::Char(' ') => "Space".to_string(),
                KeyCode::Char(c) => c.to_string(),
                KeyCode::F(n) => format!("F{n}"),
                other => format!("{other:?}"),
            })
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn defaults_and_overrides() {
        let d = KeyMap::default();
        assert_eq!(d.normal(&key(KeyCode::Enter)), Action::Accept);
        assert_eq!(d.normal(&key(KeyCode::Char('3'))), Action::Pick(3));
        let dir = std::env::temp_dir().join(format!("lr-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("keys.toml");
        std::fs::write(&p, "[keys]\naccept = [\"y\"]\ndown = [\"n\", \"Down\"]\n").unwrap();
        let m = KeyMap::load(Some(&p)).unwrap();
        assert_eq!(m.normal(&key(KeyCode::Char('y'))), Action::Accept);
        assert_eq!(m.normal(&key(KeyCode::Enter)), Action::None);
        assert_eq!(m.normal(&key(KeyCode::Char('n'))), Action::Down);
        assert_eq!(m.normal(&key(KeyCode::Char('j'))), Action::None);
        assert_eq!(m.normal(&key(KeyCode::Char('u'))), Action::Undo, "others keep their defaults");
        std::fs::write(&p, "[keys]\nacept = [\"y\"]\n").unwrap();
        let e = KeyMap::load(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("unknown action 'acept'"), "{e}");
        std::fs::write(&p, "[keys]\naccept = [\"Hyper\"]\n").unwrap();
        assert!(KeyMap::load(Some(&p)).unwrap_err().to_string().contains("unknown key 'Hyper'"));
        std::fs::write(&p, "[keys\n").unwrap();
        assert!(KeyMap::load(Some(&p)).unwrap_err().to_string().contains("keys.toml"));
        assert!(KeyMap::load(Some(&dir.join("none.toml"))).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
