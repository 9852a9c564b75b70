//! Layout decisions that the state and the drawing must agree on: how many
//! suggestions are on screen (a digit may only take one the person can see),
//! and how they are laid out. A leaf module: it knows nothing of `App` or of
//! ratatui, so both `app` and `render` can use it.

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// What the event loop learns from the terminal size and gives the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Rows of data the table shows.
    pub page: usize,
    /// Width of the suggestion lines in the detail pane (0: no detail pane).
    pub suggestion_width: usize,
    /// Lines the suggestions may use (0: none shown).
    pub suggestion_lines: usize,
    /// Lines of keys the help shows at once (it scrolls when they are more).
    pub help_lines: usize,
}

impl Default for Geometry {
    fn default() -> Self {
        // Before the first frame: assume an 80x24 terminal.
        Geometry { page: 14, suggestion_width: 78, suggestion_lines: 2, help_lines: 22 }
    }
}

/// One suggestion as drawn: its digit, the (maybe shortened) label name and
/// the probability text.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    pub digit: usize,
    pub name: String,
    pub prob: String,
}

impl Shown {
    fn width(&self) -> usize {
        // "1 name 0.16"
        digits_width(self.digit) + 1 + self.name.width() + 1 + self.prob.width()
    }
}

fn digits_width(n: usize) -> usize {
    n.to_string().len()
}

/// Separator between two suggestions on a line.
pub const GAP: usize = 2;

/// Shortens a label name to `max` columns, keeping its start and its end
/// (`balance_not_upd…bank_transfer`): names of one family share a prefix,
/// and what tells them apart is often at the end.
pub fn shorten(name: &str, max: usize) -> String {
    if name.width() <= max {
        return name.to_string();
    }
    if max <= 1 {
        return "…".chars().take(max).collect();
    }
    let room = max - 1;
    let head_w = (room * 3).div_ceil(5);
    let tail_w = room - head_w;
    let mut head = String::new();
    let mut used = 0;
    for c in name.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > head_w {
            break;
        }
        head.push(c);
        used += w;
    }
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in name.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > tail_w {
            break;
        }
        tail.push(c);
        used += w;
    }
    tail.reverse();
    format!("{head}…{}", tail.into_iter().collect::<String>())
}

/// Lays suggestions (name, probability), best first, on at most `lines`
/// lines of `width` columns. Names longer than a third of a line (at least
/// 16 columns) are shortened. Suggestions keep their order: the first that
/// does not fit ends the layout, so the digits on screen are always 1..=n.
/// The first suggestion is always shown when there is a line for it, with
/// its name shortened to fit.
pub fn suggestions(items: &[(String, f32)], width: usize, lines: usize) -> Vec<Vec<Shown>> {
    let mut out: Vec<Vec<Shown>> = Vec::new();
    if lines == 0 || width < 8 {
        return out;
    }
    let cap = (width / 3).max(16);
    let mut line: Vec<Shown> = Vec::new();
    let mut used = 0usize;
    for (n, (name, p)) in items.iter().enumerate().take(9) {
        let digit = n + 1;
        let prob = format!("{p:.2}");
        let mut s = Shown { digit, name: shorten(name, cap), prob };
        let need = |s: &Shown, used: usize| if used == 0 { s.width() } else { used + GAP + s.width() };
        if need(&s, used) > width {
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
                used = 0;
                if out.len() == lines {
                    break;
                }
            }
            if s.width() > width {
                // Alone on its line and still too wide: shorten to fit.
                let fixed = digits_width(digit) + 1 + 1 + s.prob.width();
                if width <= fixed + 1 {
                    break;
                }
                s.name = shorten(name, width - fixed);
            }
        }
        used = need(&s, used);
        line.push(s);
    }
    if !line.is_empty() && out.len() < lines {
        out.push(line);
    }
    // Room left on a line gives its shortened names back their letters,
    // first come first served; which digits are shown does not change.
    for line in &mut out {
        let used: usize = line.iter().map(Shown::width).sum::<usize>() + GAP * line.len().saturating_sub(1);
        let mut slack = width.saturating_sub(used);
        for s in line.iter_mut() {
            if slack == 0 {
                break;
            }
            let full = &items[s.digit - 1].0;
            let (now, want) = (s.name.width(), full.width());
            if want > now {
                let grow = (want - now).min(slack);
                s.name = shorten(full, now + grow);
                slack -= grow;
            }
        }
    }
    out
}

/// Wraps text to `width` columns at spaces (a word longer than a line is
/// cut across lines); line breaks in the text are kept.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        let mut used = 0;
        for word in para.split(' ') {
            let ww = word.width();
            let need = if used == 0 { ww } else { used + 1 + ww };
            if need <= width {
                if used > 0 {
                    line.push(' ');
                }
                line.push_str(word);
                used = need;
                continue;
            }
            if used > 0 {
                out.push(std::mem::take(&mut line));
                used = 0;
            }
            // The word alone: cut it across lines when it is too long.
            for c in word.chars() {
                let cw = c.width().unwrap_or(0);
                if used + cw > width {
                    out.push(std::mem::take(&mut line));
                    used = 0;
                }
                line.push(c);
                used += cw;
            }
        }
        out.push(line);
    }
    out
}

/// How many suggestions a layout shows.
pub fn count(layout: &[Vec<Shown>]) -> usize {
    layout.iter().map(|l| l.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(names: &[&str]) -> Vec<(String, f32)> {
        names.iter().enumerate().map(|(i, n)| (n.to_string(), 0.5 / (i + 1) as f32)).collect()
    }

    #[test]
    fn room_left_on_a_line_lengthens_its_names() {
        let items: Vec<(String, f32)> = vec![
            ("exchange_charge".into(), 0.87),
            ("card_payment_wrong_exchange_rate".into(), 0.04),
            ("cash_withdrawal_charge".into(), 0.03),
        ];
        // The third does not fit beside the first two: the second gets its
        // whole name back from the room left.
        let l = suggestions(&items, 90, 1);
        let names: Vec<&str> = l[0].iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["exchange_charge", "card_payment_wrong_exchange_rate"]);
        // Narrower (the cap is 20 here): shortened only as far as the line needs.
        let l = suggestions(&items, 60, 1);
        let used: usize = l[0].iter().map(Shown::width).sum::<usize>() + GAP * (l[0].len() - 1);
        assert_eq!(used, 60, "{:?}", l[0]);
        assert_eq!(l[0].len(), 2);
        assert!(l[0][1].name.width() > 20 && l[0][1].name.contains('…'), "{:?}", l[0]);
    }

    #[test]
    fn shorten_keeps_both_ends() {
        assert_eq!(shorten("short", 10), "short");
        let s = shorten("balance_not_updated_after_bank_transfer", 20);
        assert_eq!(s.width(), 20);
        assert!(s.starts_with("balance_not") && s.ends_with("ransfer") && s.contains('…'), "{s}");
    }

    #[test]
    fn wrap_keeps_every_word() {
        let t = "one two three\nfour averyveryverylongword five";
        let w = wrap(t, 10);
        assert!(w.iter().all(|l| l.width() <= 10), "{w:?}");
        assert_eq!(w.join(" ").split_whitespace().collect::<String>(), t.split_whitespace().collect::<String>());
        assert_eq!(w[0], "one two");
    }

    #[test]
    fn layout_wraps_and_keeps_order() {
        let it = items(&[
            "transfer_not_received_by_recipient",
            "balance_not_updated_after_bank_transfer",
            "pending_transfer",
            "declined_transfer",
            "transfer_timing",
            "cancel_transfer",
            "failed_transfer",
            "top_up_failed",
            "card_arrival",
        ]);
        let one = suggestions(&it, 78, 1);
        let two = suggestions(&it, 78, 2);
        assert_eq!(one.len(), 1);
        assert!(count(&one) >= 2, "{one:?}");
        assert!(count(&two) > count(&one));
        let digits: Vec<usize> = two.iter().flatten().map(|s| s.digit).collect();
        assert_eq!(digits, (1..=count(&two)).collect::<Vec<_>>());
        for l in &two {
            let w: usize = l.iter().map(|s| s.width()).sum::<usize>() + GAP * (l.len() - 1);
            assert!(w <= 78, "{w}");
        }
        // Narrow: the first still shows, shortened.
        let narrow = suggestions(&it, 20, 1);
        assert_eq!(count(&narrow), 1);
        assert!(narrow[0][0].width() <= 20);
        assert!(suggestions(&it, 78, 0).is_empty());
    }
}
