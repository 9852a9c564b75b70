//! The label picker as one component: its state (what it is for, the
//! query, the labels the query matches, the one selected), its keys, and
//! its drawing. `App` holds one while it is open and acts on what a key
//! made of it (`Picked`); `render` asks it to draw itself.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use super::action::Action;
use super::keys::{KeyMap, Mode as KeyMode};
use super::style::{centered, clear_popup, cut, Theme};

/// What the label picker is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickerPurpose {
    /// Label this pool row (the one selected when the picker opened);
    /// `unlabelled`: it had no label then (a label another annotator gives
    /// it while the picker is open is not replaced by this one).
    Label { row: usize, unlabelled: bool },
    /// Filter the all-rows view by (predicted or given) label.
    Filter,
}

/// The label set the picker searches and shows.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    pub names: &'a [String],
    pub descriptions: &'a [Option<String>],
}

/// What a key made of the picker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picked {
    /// Still open.
    Open,
    /// Closed without a choice.
    Closed,
    /// This label chosen (the picker closes).
    Label(u32),
    /// Describe this label (the picker gives way to the description editor).
    Describe(u32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Picker {
    pub purpose: PickerPurpose,
    pub query: String,
    pub selected: usize,
    /// Labels the query matches, best first.
    pub matches: Vec<u32>,
}

impl Picker {
    /// A picker with an empty query: `suggested` first (the row's best
    /// labels, for labelling), then every other label in order.
    pub fn open(purpose: PickerPurpose, labels: Labels, suggested: &[u32]) -> Picker {
        Picker { purpose, query: String::new(), selected: 0, matches: matches("", labels, suggested) }
    }

    /// Applies a key. Typing narrows the labels (fuzzy, over names and
    /// descriptions), Up and Down select, Confirm picks, EditDescription
    /// opens the selected label's description, Cancel closes.
    pub fn handle(&mut self, a: &Action, labels: Labels, suggested: &[u32]) -> Picked {
        match a {
            Action::Input(c) => {
                self.query.push(*c);
                self.rematch(labels, suggested);
            }
            Action::Backspace => {
                self.query.pop();
                self.rematch(labels, suggested);
            }
            Action::Up => self.selected = self.selected.saturating_sub(1),
            Action::Down if self.selected + 1 < self.matches.len() => self.selected += 1,
            Action::Confirm => {
                return match self.matches.get(self.selected) {
                    Some(&l) => Picked::Label(l),
                    None => Picked::Closed,
                }
            }
            Action::EditDescription => {
                if let Some(&l) = self.matches.get(self.selected) {
                    return Picked::Describe(l);
                }
            }
            Action::Cancel => return Picked::Closed,
            _ => {}
        }
        Picked::Open
    }

    fn rematch(&mut self, labels: Labels, suggested: &[u32]) {
        self.matches = matches(&self.query, labels, suggested);
        self.selected = 0;
    }

    /// Draws the picker over `area`: the title and footer from the keys in
    /// force, the query, and the matches with the row's probabilities
    /// (`probs`, when labelling) and the labels' descriptions.
    pub fn draw(&self, f: &mut Frame, area: Rect, labels: Labels, probs: &[(u32, f32)], keys: &KeyMap, theme: Theme) {
        let h = (area.height.saturating_sub(4)).clamp(5, 20);
        let r = centered(area, 60.min(area.width.saturating_sub(2)), h);
        clear_popup(f, r);
        // The keys in force, as the footer (keys.toml may remap them).
        let hints =
            |a: &[Action]| keys.hints(KeyMode::Picker, a).into_iter().map(|(k, w)| format!("{k} {w}")).collect::<Vec<_>>().join(" · ");
        let title = match self.purpose {
            PickerPurpose::Label { .. } => {
                format!(" Label: type, then {} ", hints(&[Action::Confirm, Action::EditDescription, Action::Cancel]))
            }
            PickerPurpose::Filter => format!(" Filter by label ({}) ", hints(&[Action::Confirm, Action::Cancel])),
        };
        let block = Block::default().borders(Borders::ALL).title(title);
        let inner = block.inner(r);
        f.render_widget(block, r);
        if inner.height < 2 {
            return;
        }
        let [q, list] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
        f.render_widget(Paragraph::new(format!("> {}▏", self.query)), q);
        let n = list.height as usize;
        let start = self.selected.saturating_sub(n.saturating_sub(1));
        let w = list.width as usize;
        let lines: Vec<Line> = self
            .matches
            .iter()
            .enumerate()
            .skip(start)
            .take(n)
            .map(|(pos, &l)| {
                let p = probs.iter().find(|x| x.0 == l).map(|x| format!(" {:.2}", x.1)).unwrap_or_default();
                let d = labels.descriptions[l as usize].as_deref().map(|d| format!(" — {d}")).unwrap_or_default();
                let s = cut(&format!(" {}{p}{d}", labels.names[l as usize]), w);
                if pos == self.selected {
                    Line::styled(s, theme.selected())
                } else {
                    Line::raw(s)
                }
            })
            .collect();
        if lines.is_empty() {
            f.render_widget(Paragraph::new(" no label matches").style(theme.dim()), list);
        } else {
            f.render_widget(Paragraph::new(lines), list);
        }
    }
}

/// The labels a query matches, best first: for an empty query `suggested`
/// then the rest in order; else a fuzzy match (nucleo) over each label's
/// name and description, ties in label order.
pub fn matches(query: &str, labels: Labels, suggested: &[u32]) -> Vec<u32> {
    if query.is_empty() {
        let mut v: Vec<u32> = suggested.to_vec();
        for l in 0..labels.names.len() as u32 {
            if !v.contains(&l) {
                v.push(l);
            }
        }
        return v;
    }
    use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
    let mut matcher = nucleo_matcher::Matcher::new(nucleo_matcher::Config::DEFAULT);
    let pat = Pattern::parse(query, CaseMatching::Ignore, Normalization::Smart);
    let mut scored: Vec<(u32, u32)> = Vec::new();
    let mut buf = Vec::new();
    for (i, (n, d)) in labels.names.iter().zip(labels.descriptions).enumerate() {
        let hay = match d {
            Some(d) => format!("{n} {d}"),
            None => n.clone(),
        };
        if let Some(s) = pat.score(nucleo_matcher::Utf32Str::new(&hay, &mut buf), &mut matcher) {
            scored.push((s, i as u32));
        }
    }
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_narrows_and_picks() {
        let names: Vec<String> = ["card_arrival", "cash_withdrawal", "passcode_forgotten"].iter().map(|s| s.to_string()).collect();
        let descriptions = vec![None, Some("money from an ATM".to_string()), None];
        let labels = Labels { names: &names, descriptions: &descriptions };
        let mut p = Picker::open(PickerPurpose::Filter, labels, &[2]);
        assert_eq!(p.matches, vec![2, 0, 1], "suggestions first, then the rest in order");
        for c in "atm".chars() {
            assert_eq!(p.handle(&Action::Input(c), labels, &[2]), Picked::Open);
        }
        assert_eq!(p.matches, vec![1], "descriptions are searched");
        assert_eq!(p.handle(&Action::Backspace, labels, &[2]), Picked::Open);
        assert_eq!(p.query, "at");
        assert_eq!(p.handle(&Action::Down, labels, &[2]), Picked::Open);
        let chosen = p.matches[p.selected];
        assert_eq!(p.handle(&Action::Confirm, labels, &[2]), Picked::Label(chosen));
        assert_eq!(p.handle(&Action::EditDescription, labels, &[2]), Picked::Describe(chosen));
        for c in "zzzz".chars() {
            p.handle(&Action::Input(c), labels, &[2]);
        }
        assert!(p.matches.is_empty());
        assert_eq!(p.handle(&Action::Confirm, labels, &[2]), Picked::Closed, "nothing to pick: it closes");
        assert_eq!(p.handle(&Action::Cancel, labels, &[2]), Picked::Closed);
    }
}
