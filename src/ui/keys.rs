//! Key bindings: one table per mode (the views, and each overlay), each
//! entry an action with its default keys and its help text; a config file
//! changes them (`keys.toml` in the platform config folder, or
//! `$LABELREST_KEYS`). The footer, the help overlay and every hint are
//! drawn from the keys in force.
//!
//! ```toml
//! # ~/.config/labelrest/keys.toml
//! [keys]            # the views (queue, labelled rows, all rows)
//! accept = ["Enter", "y"]
//! down = ["j", "Down", "n"]
//! [picker]          # the label picker (typing filters)
//! pick = ["Enter"]
//! ```
//!
//! An action listed keeps only the keys given; the others keep their
//! defaults. A key bound to two actions of one mode, an action left with
//! no key, or an unknown name is refused with one line that says which.
//! `1`-`9` always take the suggestion with that number (in the views).

use anyhow::{anyhow, bail, Context, Result};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::action::Action;

/// Where keys are read: the views, or an overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// The queue, labelled rows and all rows.
    Views,
    Picker,
    Describe,
    Search,
    Reader,
    Help,
}

impl Mode {
    pub const ALL: [Mode; 6] = [Mode::Views, Mode::Picker, Mode::Describe, Mode::Search, Mode::Reader, Mode::Help];

    /// The section of keys.toml.
    pub fn section(self) -> &'static str {
        match self {
            Mode::Views => "keys",
            Mode::Picker => "picker",
            Mode::Describe => "describe",
            Mode::Search => "search",
            Mode::Reader => "reader",
            Mode::Help => "help",
        }
    }

    /// Whether typed characters are text (filter, description, search).
    pub fn takes_text(self) -> bool {
        matches!(self, Mode::Picker | Mode::Describe | Mode::Search)
    }

    pub fn table(self) -> &'static [Binding] {
        match self {
            Mode::Views => VIEWS,
            Mode::Picker => PICKER,
            Mode::Describe => DESCRIBE,
            Mode::Search => SEARCH,
            Mode::Reader => READER,
            Mode::Help => HELP,
        }
    }
}

/// One entry of a key table.
#[derive(Debug, Clone)]
pub struct Binding {
    pub action: Action,
    /// Its name in keys.toml.
    pub name: &'static str,
    pub keys: &'static [&'static str],
    /// What the help overlay says.
    pub help: &'static str,
    /// The word in the footer (empty: not in the footer).
    pub hint: &'static str,
}

const fn b(action: Action, name: &'static str, keys: &'static [&'static str], help: &'static str, hint: &'static str) -> Binding {
    Binding { action, name, keys, help, hint }
}

pub const VIEWS: &[Binding] = &[
    b(Action::Down, "down", &["j", "Down"], "move down", ""),
    b(Action::Up, "up", &["k", "Up"], "move up", ""),
    b(Action::Top, "top", &["g", "Home"], "first row", ""),
    b(Action::Bottom, "bottom", &["G", "End"], "last row", ""),
    b(Action::PageDown, "page-down", &["PageDown", "Space"], "page down", ""),
    b(Action::PageUp, "page-up", &["PageUp"], "page up", ""),
    b(Action::Accept, "accept", &["Enter", "a"], "accept the prediction as the label", "accept"),
    b(Action::OpenPicker, "picker", &["/", "l"], "label picker (type to filter; Tab describes a label)", "label"),
    b(Action::Read, "read", &["v"], "read the whole text", "read"),
    b(Action::Skip, "skip", &["x"], "skip the row until you come back to it", "skip"),
    b(Action::Undo, "undo", &["u"], "undo the last decision (right after x: the skip)", "undo"),
    b(Action::Retrain, "retrain", &["r"], "retrain now", "retrain"),
    b(Action::NextView, "next-view", &["Tab"], "views: queue, labelled, all rows", "view"),
    b(Action::Search, "search", &["t"], "search the texts (all rows view; again: clear)", "search"),
    b(Action::Review, "review", &["R"], "your labels the model doubts first (again: all)", "review"),
    b(Action::Disputes, "disputes", &["D"], "annotators' disagreements, to adjudicate (again: all)", "disputes"),
    b(Action::Filter, "filter", &["f"], "all rows: filter by a label (again: clear)", "filter"),
    b(Action::SortConfidence, "sort", &["c"], "all rows: sort by confidence", "sort"),
    b(Action::CycleStrategy, "strategy", &["s"], "next query strategy", ""),
    b(Action::Export, "export", &["e"], "export every row (into the session folder)", "export"),
    b(Action::CycleMode, "mode", &["m"], "next mode: auto, head, finetune, contrastive", ""),
    b(Action::FineTune, "finetune", &["F"], "fine-tune the encoder now (again: cancel)", ""),
    b(Action::ToggleHelp, "help", &["?"], "this help", "help"),
    b(Action::Quit, "quit", &["q", "Esc"], "quit (everything is saved)", "quit"),
];

pub const PICKER: &[Binding] = &[
    b(Action::Confirm, "pick", &["Enter"], "take the highlighted label", "pick"),
    b(Action::Up, "up", &["Up"], "previous label", ""),
    b(Action::Down, "down", &["Down"], "next label", ""),
    b(Action::EditDescription, "describe", &["Tab"], "describe the highlighted label", "describe"),
    b(Action::Backspace, "erase", &["Backspace"], "erase a character", ""),
    b(Action::Cancel, "close", &["Esc"], "close", "close"),
];

pub const DESCRIBE: &[Binding] = &[
    b(Action::Confirm, "save", &["Enter"], "save the description (retrains)", "save"),
    b(Action::Backspace, "erase", &["Backspace"], "erase a character", ""),
    b(Action::Cancel, "close", &["Esc"], "close without saving", "cancel"),
];

pub const SEARCH: &[Binding] = &[
    b(Action::Confirm, "search", &["Enter"], "show the rows whose text has every word", "search"),
    b(Action::Backspace, "erase", &["Backspace"], "erase a character", ""),
    b(Action::Cancel, "close", &["Esc"], "close", "cancel"),
];

pub const READER: &[Binding] = &[
    b(Action::Down, "down", &["j", "Down"], "scroll down", "scroll"),
    b(Action::Up, "up", &["k", "Up"], "scroll up", ""),
    b(Action::PageDown, "page-down", &["PageDown", "Space"], "page down", "page"),
    b(Action::PageUp, "page-up", &["PageUp"], "page up", ""),
    b(Action::Cancel, "close", &["Esc", "v", "q"], "close", "close"),
];

pub const HELP: &[Binding] = &[
    // (No footer words: the help's border says how to scroll, when it can.)
    b(Action::Down, "down", &["j", "Down"], "scroll down (where the keys do not all fit)", ""),
    b(Action::Up, "up", &["k", "Up"], "scroll up", ""),
    b(Action::PageDown, "page-down", &["PageDown", "Space"], "page down", ""),
    b(Action::PageUp, "page-up", &["PageUp"], "page up", ""),
    b(Action::Cancel, "close", &["Esc", "?", "q", "Enter"], "close", "close"),
];

/// Parses a key name: one character, or Enter, Tab, Esc, Space, Backspace,
/// Up, Down, Left, Right, Home, End, PageUp, PageDown, F1-F12.
pub fn parse_key(s: &str) -> Option<KeyCode> {
    let mut chars = s.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        // A control character ("\t") never comes as a character key: the
        // terminal sends Tab, Enter or Esc, named as such.
        return (!c.is_control()).then_some(KeyCode::Char(c));
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

/// A key as the screen names it.
pub fn key_name(k: &KeyCode) -> String {
    match k {
        KeyCode::Char(' ') => "Space".to_string(),
        KeyCode::Char(c) => c.to_string(),
        KeyCode::F(n) => format!("F{n}"),
        KeyCode::PageUp => "PgUp".into(),
        KeyCode::PageDown => "PgDn".into(),
        other => format!("{other:?}"),
    }
}

/// The keys in force, per mode.
#[derive(Debug, Clone)]
pub struct KeyMap {
    maps: HashMap<Mode, HashMap<KeyCode, Action>>,
    /// Per mode and action name: its keys in the order given.
    order: HashMap<(Mode, &'static str), Vec<KeyCode>>,
}

impl Default for KeyMap {
    fn default() -> Self {
        let mut m = KeyMap { maps: HashMap::new(), order: HashMap::new() };
        for mode in Mode::ALL {
            let map = m.maps.entry(mode).or_default();
            for bd in mode.table() {
                let codes: Vec<KeyCode> = bd.keys.iter().map(|k| parse_key(k).expect("default key")).collect();
                for c in &codes {
                    map.insert(*c, bd.action.clone());
                }
                m.order.insert((mode, bd.name), codes);
            }
        }
        m
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
        map.apply(path, &text)?;
        Ok(map)
    }

    fn apply(&mut self, path: &Path, text: &str) -> Result<()> {
        let p = path.display();
        // `FILE:LINE` of a section's header, or of an action's line in it
        // (the place a message names; just `FILE` where the file has none).
        let at = |section: &str, action: Option<&str>| -> String {
            let mut current = String::new();
            for (i, line) in text.lines().enumerate() {
                let l = line.trim();
                if let Some(h) = l.strip_prefix('[').and_then(|h| h.split(']').next()) {
                    current = h.trim().to_string();
                    if action.is_none() && current == section {
                        return format!("{p}:{}", i + 1);
                    }
                } else if let Some(a) = action {
                    let key = l.split('=').next().unwrap_or("").trim().trim_matches('"');
                    if current == section && l.contains('=') && key == a {
                        return format!("{p}:{}", i + 1);
                    }
                }
            }
            p.to_string()
        };
        let file: BTreeMap<String, BTreeMap<String, Vec<String>>> = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| {
                let before = &text[..s.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
                format!(":{line}:{col}")
            });
            anyhow!("{p}{}: {}", at.unwrap_or_default(), e.message())
        })?;
        for (section, entries) in file {
            let mode = Mode::ALL.into_iter().find(|m| m.section() == section).ok_or_else(|| {
                anyhow!(
                    "{}: unknown section [{section}]; the sections are: {}",
                    at(&section, None),
                    Mode::ALL.iter().map(|m| format!("[{}]", m.section())).collect::<Vec<_>>().join(", ")
                )
            })?;
            for (name, keys) in entries {
                let bd = mode.table().iter().find(|b| b.name == name).ok_or_else(|| {
                    anyhow!(
                        "{}: [{section}] unknown action '{name}'; the actions are: {}",
                        at(&section, Some(&name)),
                        mode.table().iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
                    )
                })?;
                let mut codes = Vec::new();
                for k in &keys {
                    let here = || at(&section, Some(&name));
                    let code = parse_key(k)
                        .ok_or_else(|| anyhow!("{}: [{section}] action '{name}': unknown key '{}'", here(), k.escape_debug()))?;
                    if mode == Mode::Views && matches!(code, KeyCode::Char('1'..='9')) {
                        bail!("{}: [{section}] action '{name}': keys 1-9 take suggestions and cannot be bound", here());
                    }
                    if mode.takes_text() && matches!(code, KeyCode::Char(_)) {
                        bail!("{}: [{section}] action '{name}': '{k}' is typed as text there; bind a key like Enter or Tab", here());
                    }
                    codes.push(code);
                }
                let map = self.maps.entry(mode).or_default();
                map.retain(|_, a| *a != bd.action);
                for c in &codes {
                    map.insert(*c, bd.action.clone());
                }
                self.order.insert((mode, bd.name), codes);
            }
        }
        // Every action keeps a key, and no key does two things in one mode.
        for mode in Mode::ALL {
            let mut owner: HashMap<KeyCode, &'static str> = HashMap::new();
            for bd in mode.table() {
                let codes = &self.order[&(mode, bd.name)];
                if codes.is_empty() {
                    bail!("{}: [{}] action '{}' has no key left; give it one", at(mode.section(), Some(bd.name)), mode.section(), bd.name);
                }
                for c in codes {
                    if let Some(other) = owner.insert(*c, bd.name) {
                        // The line that bound it: of the one action the file names, where only one is.
                        let place = [at(mode.section(), Some(bd.name)), at(mode.section(), Some(other))]
                            .into_iter()
                            .find(|s| s.as_str() != p.to_string())
                            .unwrap_or_else(|| p.to_string());
                        bail!("{place}: [{}] key '{}' is bound to both '{other}' and '{}'", mode.section(), key_name(c), bd.name);
                    }
                }
            }
            // Keep the map in line with the table (a key taken over is gone from its old action).
            let map = self.maps.entry(mode).or_default();
            map.clear();
            for bd in mode.table() {
                for c in &self.order[&(mode, bd.name)] {
                    map.insert(*c, bd.action.clone());
                }
            }
        }
        Ok(())
    }

    /// The action of a key in a mode.
    pub fn action(&self, mode: Mode, k: &KeyEvent) -> Action {
        if k.modifiers.contains(KeyModifiers::CONTROL) {
            return match k.code {
                KeyCode::Char('c') => Action::Quit,
                KeyCode::Char('d') if mode == Mode::Views || mode == Mode::Reader => Action::PageDown,
                KeyCode::Char('u') if mode == Mode::Views || mode == Mode::Reader => Action::PageUp,
                _ => Action::None,
            };
        }
        if mode == Mode::Views {
            if let KeyCode::Char(c @ '1'..='9') = k.code {
                return Action::Pick(c as usize - '0' as usize);
            }
        }
        if let Some(a) = self.maps.get(&mode).and_then(|m| m.get(&k.code)) {
            return a.clone();
        }
        match k.code {
            KeyCode::Char(c) if mode.takes_text() => Action::Input(c),
            _ => Action::None,
        }
    }

    /// The keys bound to an action in a mode, as the screen names them.
    pub fn keys_of(&self, mode: Mode, action: &Action) -> Vec<String> {
        mode.table()
            .iter()
            .filter(|b| b.action == *action)
            .flat_map(|b| self.order.get(&(mode, b.name)).cloned().unwrap_or_default())
            .map(|c| key_name(&c))
            .collect()
    }

    /// The first key of an action (for hints), or "?" if it has none.
    pub fn key(&self, mode: Mode, action: &Action) -> String {
        self.keys_of(mode, action).into_iter().next().unwrap_or_else(|| "?".into())
    }

    /// The help overlay's lines: keys and what they do, per mode. The
    /// disputes' key is listed for the adjudicator only (for anyone else it
    /// only says how many wait).
    pub fn help(&self, adjudicator: bool) -> Vec<(String, String)> {
        let k = |a: &Action| self.keys_of(Mode::Views, a).join(" ");
        let mut v = vec![(format!("{} {}", k(&Action::Down), k(&Action::Up)), "move".to_string())];
        v.push((format!("{} {}", k(&Action::Top), k(&Action::Bottom)), "first, last row".into()));
        v.push((format!("{} {}", k(&Action::PageDown), k(&Action::PageUp)), "page down, up".into()));
        for bd in VIEWS {
            if matches!(
                bd.action,
                Action::Down | Action::Up | Action::Top | Action::Bottom | Action::PageDown | Action::PageUp | Action::ToggleHelp
            ) || (bd.action == Action::Disputes && !adjudicator)
            {
                continue;
            }
            if bd.action == Action::Quit {
                // Fixed keys, on the quit line so that the help still fits
                // 80x24 without scrolling.
                v.push((k(&bd.action), "quit (all is saved) · Ctrl-C anywhere · Ctrl-Z suspends".to_string()));
                continue;
            }
            v.push((k(&bd.action), bd.help.to_string()));
            if bd.action == Action::Accept {
                v.push(("1-9".into(), "take the suggestion with that number, if shown".into()));
            }
        }
        let pk = |a: &Action| self.key(Mode::Picker, a);
        v.push((
            "in the picker".into(),
            format!(
                "{} picks · {} describes the label · {} closes",
                pk(&Action::Confirm),
                pk(&Action::EditDescription),
                pk(&Action::Cancel)
            ),
        ));
        v
    }

    /// Footer hints for a mode: (keys, word) in table order, for the
    /// actions that have a footer word and are in `only` (all when empty).
    pub fn hints(&self, mode: Mode, only: &[Action]) -> Vec<(String, &'static str)> {
        mode.table()
            .iter()
            .filter(|b| !b.hint.is_empty() && (only.is_empty() || only.contains(&b.action)))
            .map(|b| (self.key(mode, &b.action), b.hint))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn load(text: &str) -> Result<KeyMap> {
        let mut m = KeyMap::default();
        m.apply(Path::new("keys.toml"), text)?;
        Ok(m)
    }

    #[test]
    fn defaults_and_overrides() {
        let d = KeyMap::default();
        assert_eq!(d.action(Mode::Views, &key(KeyCode::Enter)), Action::Accept);
        assert_eq!(d.action(Mode::Views, &key(KeyCode::Char('3'))), Action::Pick(3));
        assert_eq!(d.action(Mode::Picker, &key(KeyCode::Char('3'))), Action::Input('3'), "typed in the picker");
        assert_eq!(d.action(Mode::Picker, &key(KeyCode::Enter)), Action::Confirm);
        let m = load("[keys]\naccept = [\"y\"]\ndown = [\"n\", \"Down\"]\nsearch = [\"T\"]\n").unwrap();
        assert_eq!(m.action(Mode::Views, &key(KeyCode::Char('y'))), Action::Accept);
        assert_eq!(m.action(Mode::Views, &key(KeyCode::Enter)), Action::None);
        assert_eq!(m.action(Mode::Views, &key(KeyCode::Char('n'))), Action::Down);
        assert_eq!(m.action(Mode::Views, &key(KeyCode::Char('j'))), Action::None);
        assert_eq!(m.action(Mode::Views, &key(KeyCode::Char('u'))), Action::Undo, "others keep their defaults");
        assert_eq!(m.keys_of(Mode::Views, &Action::Accept), vec!["y"]);
        assert!(m.hints(Mode::Views, &[Action::Accept]).contains(&("y".to_string(), "accept")));
        let m = load("[picker]\npick = [\"Tab\"]\ndescribe = [\"F2\"]\n").unwrap();
        assert_eq!(m.action(Mode::Picker, &key(KeyCode::Tab)), Action::Confirm);
    }

    #[test]
    fn bad_configs_are_refused_with_one_line() {
        let e = |t: &str| load(t).unwrap_err().to_string();
        assert!(e("[keys]\nacept = [\"y\"]\n").contains("unknown action 'acept'"));
        assert!(e("[keys]\naccept = [\"Hyper\"]\n").contains("unknown key 'Hyper'"));
        // A control character is no key the terminal sends (Tab comes as Tab).
        assert!(e("[keys]\nquit = [\"\\t\"]\n").contains("unknown key '\\t'"), "{}", e("[keys]\nquit = [\"\\t\"]\n"));
        assert!(e("[keys]\naccept = [\"1\"]\n").contains("1-9"));
        // One key for two actions: both named (x is skip by default).
        let m = e("[keys]\naccept = [\"x\"]\n");
        assert!(m.contains("'x'") && m.contains("'accept'") && m.contains("'skip'"), "{m}");
        // An action left with no key.
        let m = e("[keys]\nquit = []\n");
        assert!(m.contains("'quit' has no key"), "{m}");
        // A TOML error: its line and column.
        let m = e("[keys]\naccept = [\"y\"\n");
        assert!(m.starts_with("keys.toml:2:") || m.starts_with("keys.toml:3:"), "{m}");
        assert!(e("[nope]\nx = []\n").contains("unknown section [nope]"));
        assert!(e("[picker]\npick = [\"p\"]\n").contains("typed as text"));
        assert!(KeyMap::load(Some(Path::new("/nonexistent/keys.toml"))).is_ok());
        // Each names the line it found wrong.
        let m = e("# mine\n[keys]\n\nacept = [\"y\"]\n");
        assert!(m.starts_with("keys.toml:4: [keys] unknown action 'acept'"), "{m}");
        let m = e("[keys]\ndown = [\"j\"]\naccept = [\"x\"]\n");
        assert!(m.starts_with("keys.toml:3: [keys] key 'x'"), "{m}");
        let m = e("\n[nope]\nx = []\n");
        assert!(m.starts_with("keys.toml:2: unknown section"), "{m}");
        let m = e("[keys]\ndown = [\"j\"]\n[picker]\n\"pick\" = [\"p\"]\n");
        assert!(m.starts_with("keys.toml:4: [picker] action 'pick'"), "{m}");
    }
}
