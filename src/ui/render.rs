//! Drawing: a pure function of the `App` state onto a ratatui frame. Only the
//! visible rows are built, so 100,000 rows draw as fast as 100.

use crate::data::display_safe;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;
use unicode_width::UnicodeWidthStr;

use super::action::Action;
use super::app::{App, Overlay, PickerPurpose, View, WorkerState};
use super::keys::Mode as KeyMode;
use super::layout::Geometry;
use super::style::{centered, clear_popup};
pub use super::style::{cut, Theme};
use crate::data::thousands;
use crate::worker::IterationRecord;

/// The screen's areas for a terminal size (also used to size the page).
pub struct Areas {
    pub header: Rect,
    pub table: Rect,
    pub side: Option<Rect>,
    pub detail: Option<Rect>,
    pub footer: Rect,
}

pub fn areas(area: Rect) -> Areas {
    // The detail pane grows with the terminal: more of the text, and two
    // lines of suggestions from 22 rows on.
    let detail_h = if area.height >= 30 {
        (area.height / 4).clamp(7, 12)
    } else if area.height >= 22 {
        6
    } else if area.height >= 14 {
        4
    } else {
        0
    };
    let [header, body, detail, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(detail_h), Constraint::Length(1)]).areas(area);
    let side_w = if area.width >= 110 {
        32
    } else if area.width >= 72 {
        25
    } else {
        0
    };
    let (table, side) = if side_w > 0 {
        let [t, s] = Layout::horizontal([Constraint::Min(20), Constraint::Length(side_w)]).areas(body);
        (t, Some(s))
    } else {
        (body, None)
    };
    Areas { header, table, side, detail: if detail_h > 0 { Some(detail) } else { None }, footer }
}

/// Rows of data the table area shows (inside its border, under its header).
pub fn table_page(area: Rect) -> usize {
    areas(area).table.height.saturating_sub(3) as usize
}

/// Lines of the detail pane given to suggestions, for its inner height.
fn suggestion_lines(inner_h: u16) -> usize {
    match inner_h {
        0 => 0,
        1..=3 => 1,
        _ => 2,
    }
}

/// What the state needs to know of the screen: the page, and where the
/// suggestions go (so that a digit takes only a suggestion on screen).
pub fn geometry(area: Rect) -> Geometry {
    let a = areas(area);
    let too_small = area.width < 24 || area.height < 6;
    let (w, lines) = match a.detail {
        Some(d) if !too_small => {
            let inner = Block::default().borders(Borders::ALL).inner(d);
            (inner.width as usize, suggestion_lines(inner.height))
        }
        _ => (0, 0),
    };
    Geometry { page: table_page(area), suggestion_width: w, suggestion_lines: lines, help_lines: area.height.saturating_sub(2) as usize }
}

pub fn draw(f: &mut Frame, app: &App, theme: Theme) {
    let area = f.area();
    if area.width < 24 || area.height < 6 {
        f.render_widget(Paragraph::new("labelrest: terminal too small").wrap(Wrap { trim: true }), area);
        return;
    }
    let a = areas(area);
    draw_header(f, app, a.header, theme);
    draw_table(f, app, a.table, theme);
    if let Some(s) = a.side {
        draw_side(f, app, s, theme);
    }
    if let Some(d) = a.detail {
        draw_detail(f, app, d, theme);
    }
    draw_footer(f, app, a.footer, theme);
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help { scroll } => draw_help(f, app, area, *scroll, theme),
        Overlay::Picker(p) => {
            let probs = match p.purpose {
                PickerPurpose::Label { row, .. } => app.suggestions(row),
                PickerPurpose::Filter => Vec::new(),
            };
            // Labelling, the picker stays above the row pane: the text being
            // labelled stays in sight (where there is room for both).
            let over = match (p.purpose, a.detail) {
                (PickerPurpose::Label { .. }, Some(d)) if d.y.saturating_sub(area.y) >= 9 => Rect { height: d.y - area.y, ..area },
                _ => area,
            };
            p.draw(f, over, app.picker_labels(), &probs, &app.keys, theme)
        }
        Overlay::Describe { label, text, .. } => draw_describe(f, app, area, *label, text, theme),
        Overlay::Reader { row, scroll } => draw_reader(f, app, area, *row, *scroll, theme),
        Overlay::Search { query } => draw_search(f, app, area, query, theme),
    }
}

/// What the background is doing, shortest first when room is short.
fn status_text(app: &App) -> (String, String) {
    let worker = match &app.worker {
        WorkerState::Starting => Some("starting".to_string()),
        WorkerState::Idle => None,
        WorkerState::Busy { stage, done, total } if *total > 1 => Some(format!("{stage} {}/{}", thousands(*done), thousands(*total))),
        WorkerState::Busy { stage, .. } => Some(stage.clone()),
    };
    let ft = if app.finetune_running { app.finetune_status.clone() } else { None };
    let long = match (&worker, &ft) {
        (Some(w), Some(f)) => format!("{w} · {f}"),
        (Some(w), None) => w.clone(),
        (None, Some(f)) => f.clone(),
        (None, None) => "ready".into(),
    };
    let short = match (&worker, &ft) {
        (Some(w), _) => w.clone(),
        // Where the fine-tune says how far it is, that part: "fine-tune 40/94 ~12s".
        (None, Some(f)) => f.split(" · ").next().unwrap_or("fine-tuning").to_string(),
        (None, None) => "ready".into(),
    };
    (long, short)
}

fn draw_header(f: &mut Frame, app: &App, area: Rect, theme: Theme) {
    let w = area.width as usize;
    // The session name and the counts always show; the rest gives way.
    let essential = format!(" {} · {}/{}", app.name, thousands(app.n_labelled), thousands(app.row_ids.len()));
    let full = format!(
        " labelrest · {} · it {} · {} labelled / {} · {}",
        app.name,
        app.iteration,
        thousands(app.n_labelled),
        thousands(app.row_ids.len()),
        app.strategy.name()
    );
    let (long, short) = status_text(app);
    let (left, right) = if full.width() + long.width() + 3 <= w {
        (full, long)
    } else if full.width() + short.width() + 3 <= w {
        (full, short)
    } else if essential.width() + long.width() + 3 <= w {
        (essential, long)
    } else {
        (essential.clone(), cut(&short, w.saturating_sub(essential.width() + 3)))
    };
    let left = cut(&left, w);
    let pad = w.saturating_sub(left.width() + right.width() + 1);
    let line = Line::from(vec![
        Span::styled(left, Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(" ".repeat(pad)),
        Span::styled(cut(&right, w), theme.fg(Color::Cyan)),
    ]);
    f.render_widget(Paragraph::new(line), area);
}

fn draw_table(f: &mut Frame, app: &App, area: Rect, theme: Theme) {
    let list = app.current_list();
    let title = match app.view {
        View::Queue => format!(" Queue ({}, {} rows) ", app.strategy.name(), thousands(list.len())),
        View::Labelled if app.adjudicating => format!(" Disputes ({} to adjudicate) ", thousands(list.len())),
        View::Labelled if app.review => {
            let disputed = list.iter().filter(|&&i| app.dispute(i as usize).is_some()).count();
            format!(" Review ({} labels, least likely first; {} disputed) ", thousands(list.len()), thousands(disputed))
        }
        View::Labelled => format!(" Labelled ({}) ", thousands(list.len())),
        View::All => {
            let mut t = format!(" All rows ({})", thousands(list.len()));
            if let Some(l) = app.all_filter {
                t.push_str(&format!(" label={}", app.label_names[l as usize]));
            }
            if let Some(q) = &app.all_search {
                t.push_str(&format!(" search '{}'", cut(q, 20)));
            }
            t.push_str(app.all_sort.title());
            t.push(' ');
            t
        }
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner_w = area.width.saturating_sub(2) as usize;
    let page = area.height.saturating_sub(3) as usize;
    // Column widths: marker+number, text, label, prob, entropy.
    let digits = list.len().max(1).to_string().len().max(2);
    let num_w = digits + 1;
    let label_w = if inner_w >= 70 {
        24
    } else if inner_w >= 44 {
        15
    } else {
        10
    };
    let num_cols = if inner_w >= 40 { 10 } else { 0 };
    let text_w = inner_w.saturating_sub(num_w + label_w + num_cols + 2 + if num_cols > 0 { 2 } else { 0 }).max(4);
    let label_head = match app.view {
        View::Queue => "prediction",
        View::Labelled => "label",
        View::All => "source+label",
    };
    let mut header_cells = vec![Cell::from("#"), Cell::from("text"), Cell::from(label_head)];
    if num_cols > 0 {
        header_cells.push(Cell::from("prob"));
        header_cells.push(Cell::from(" ent"));
    }
    let header = Row::new(header_cells).style(Style::default().add_modifier(Modifier::BOLD));
    let start = app.offset().min(list.len());
    let end = (start + page).min(list.len());
    let batch_n = if app.view == View::Queue { app.batch_remaining() } else { 0 };
    let mut rows = Vec::with_capacity(end - start);
    for (pos, &i) in list[start..end].iter().enumerate() {
        let pos = start + pos;
        let i = i as usize;
        let sel = pos == app.cursor();
        let marker = if sel {
            "▶"
        } else if pos < batch_n {
            "•"
        } else {
            " "
        };
        let dispute = if app.review { app.dispute(i) } else { None };
        let pred = match (app.view, app.labels[i]) {
            // The disputes: the annotators' labels; the model's say is in the row's suggestions.
            (View::Labelled, _) if app.adjudicating => None,
            // Review: what the model trained without the row says.
            // Its entropy is not kept, and the current model's beside its
            // probability would mix two models: none is shown (`-`).
            (View::Labelled, Some(_)) if app.review && dispute.is_some() => dispute.map(|(m, p)| (m, p, f32::NAN)),
            // Review, agreeing: the probability the list is ranked by (what
            // the model trained without the row gives its label).
            (View::Labelled, Some((l, _))) if app.review && app.review_prob(i).is_some() => app.review_prob(i).map(|p| (l, p, f32::NAN)),
            // A labelled row: the model's probability of the label it has
            // (in the all-rows view too, beside the person's label).
            (View::Labelled | View::All, Some((l, _))) => {
                app.prob_of(i, l).map(|p| (l, p, app.prediction(i).map(|x| x.2).unwrap_or(f32::NAN)))
            }
            _ => app.prediction(i),
        };
        let label_text = match app.view {
            View::Queue => pred.map(|p| app.label_names[p.0 as usize].clone()).unwrap_or_else(|| "…".into()),
            // A dispute: each annotator's label.
            View::Labelled if app.adjudicating => app
                .disputed_labels(i)
                .map(|ls| ls.iter().map(|l| app.label_names[l.label as usize].as_str()).collect::<Vec<_>>().join(" / "))
                .unwrap_or_default(),
            View::Labelled => {
                let given = app.labels[i].map(|(l, _)| app.label_names[l as usize].clone()).unwrap_or_default();
                match dispute {
                    // The label column names what the model says; the
                    // detail pane's title names the given label.
                    Some((m, _)) => format!("≠ {}", app.label_names[m as usize]),
                    None => given,
                }
            }
            View::All if app.closed.contains(&(i as u32)) => "d (disputed)".to_string(),
            View::All => match app.shown_label(i) {
                Some((l, src)) => format!("{} {}", &src.as_str()[..1], app.label_names[l as usize]),
                None => String::new(),
            },
        };
        let mut cells = vec![
            Cell::from(format!("{marker}{:>digits$}", pos + 1)),
            Cell::from(cut(&app.texts[i], text_w)),
            Cell::from(cut(&label_text, label_w)),
        ];
        if num_cols > 0 {
            match pred {
                Some((_, p, e)) => {
                    cells.push(Cell::from(format!("{p:>4.2}")));
                    cells.push(Cell::from(if e.is_nan() {
                        "   -".to_string()
                    } else if e < 9.995 {
                        format!("{e:>4.2}")
                    } else {
                        format!("{e:>4.1}")
                    }));
                }
                None => {
                    cells.push(Cell::from("   -"));
                    cells.push(Cell::from("   -"));
                }
            }
        }
        let mut style = Style::default();
        if pos < batch_n {
            style = theme.batch();
        }
        if sel {
            style = theme.selected();
        }
        rows.push(Row::new(cells).style(style));
    }
    let mut widths = vec![Constraint::Length(num_w as u16), Constraint::Length(text_w as u16), Constraint::Length(label_w as u16)];
    if num_cols > 0 {
        widths.push(Constraint::Length(4));
        widths.push(Constraint::Length(4));
    }
    let empty = list.is_empty();
    let table = Table::new(rows, widths).header(header).block(block).column_spacing(1);
    f.render_widget(table, area);
    if empty {
        let msg = match app.view {
            View::Queue => format!("every row is labelled: {} exports", app.key(&Action::Export)),
            View::Labelled if app.adjudicating => {
                // (It fits the table of an 80-column terminal.)
                format!("no disputes to settle ({}: every label)", app.key(&Action::Disputes))
            }
            View::Labelled if app.review => {
                format!("no disputed label left ({} shows every label)", app.key(&Action::Review))
            }
            View::Labelled => format!(
                "no labels yet: the queue is {} {} away",
                app.key(&Action::NextView),
                if app.key(&Action::NextView) == "Tab" { "twice" } else { "two views" }
            ),
            View::All => format!("no rows match ({} clears the filter, {} the search)", app.key(&Action::Filter), app.key(&Action::Search)),
        };
        let inner =
            Rect { x: area.x + 2, y: area.y + 2, width: area.width.saturating_sub(4), height: 1.min(area.height.saturating_sub(3)) };
        f.render_widget(Paragraph::new(msg).style(theme.dim()), inner);
    }
}

fn spark(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    values.iter().map(|&v| BARS[((v.clamp(0.0, 1.0) * 7.0).round() as usize).min(7)]).collect()
}

fn draw_side(f: &mut Frame, app: &App, area: Rect, theme: Theme) {
    let block = Block::default().borders(Borders::ALL).title(" Iterations ");
    let inner_h = area.height.saturating_sub(2) as usize;
    let w = area.width.saturating_sub(2) as usize;
    let mut lines: Vec<Line> = Vec::new();
    let gold = app.has_test;
    lines.push(Line::styled(
        if gold { " it lab  acc   F1 kept" } else { " it lab kept  ent" },
        Style::default().add_modifier(Modifier::BOLD),
    ));
    // Agreement between annotators on the rows sent to two (up to two pairs).
    // (The pair with most rows in common; `stats` lists every pair.)
    let mut team: Vec<String> = Vec::new();
    let t = &app.panel_team;
    if let Some(p) = t.agreement.first() {
        let more = if t.agreement.len() > 1 { format!(" +{}", t.agreement.len() - 1) } else { String::new() };
        team.push(format!(" agree {}/{}{more}", display_safe(&p.a), display_safe(&p.b)));
        team.push(format!(" {:.0}% of {} · κ {:.2}", p.raw * 100.0, p.rows, p.kappa));
    }
    if t.disputes > 0 || t.waiting > 0 {
        team.push(format!(" disputes {} · wait {}", t.disputes, t.waiting));
    }
    // The last rows of history that fit, leaving room for the summary lines.
    let summary_lines = 10usize + team.len();
    let room = inner_h.saturating_sub(1 + summary_lines).max(1);
    let hist = &app.history[app.history.len().saturating_sub(room)..];
    for h in hist {
        let kept = h.kept_rate().map(|k| format!("{:>3.0}%", k * 100.0)).unwrap_or_else(|| "   -".into());
        let pct = |v: Option<f64>| {
            v.map(|a| if a >= 0.9995 { "100".to_string() } else { format!("{:.1}", a * 100.0) }).unwrap_or_else(|| "-".into())
        };
        let s = if gold {
            format!("{:>3}{:>4} {:>4} {:>4} {kept}", h.iteration, h.labels, pct(h.accuracy), pct(h.macro_f1),)
        } else {
            format!("{:>3}{:>4} {kept} {:>4.2}", h.iteration, h.labels, h.mean_entropy)
        };
        lines.push(Line::raw(cut(&s, w)));
    }
    if app.history.is_empty() {
        lines.push(Line::styled(" no model yet", theme.dim()));
    }
    let series: Vec<f64> = if gold {
        app.history.iter().filter_map(|h| h.accuracy).collect()
    } else {
        app.history.iter().filter_map(|h| h.kept_rate()).collect()
    };
    let tail = &series[series.len().saturating_sub(w.saturating_sub(5))..];
    // (Nothing to draw before the first batch kept or not: no empty line.)
    if !tail.is_empty() {
        lines.push(Line::raw(cut(&format!(" {} {}", if gold { "acc" } else { "kept" }, spark(tail)), w)));
    }
    if let Some(last) = app.history.last() {
        let prev = app.history.len().checked_sub(2).map(|i| app.history[i].mean_entropy);
        let delta = prev.map(|p| {
            let d = last.mean_entropy - p;
            format!("{}{:.2}", if d <= 0.0 { "↓" } else { "↑" }, d.abs())
        });
        lines.push(Line::raw(cut(&format!(" ent {:.2}{} · {:.0}ms", last.mean_entropy, delta.unwrap_or_default(), last.total_ms), w)));
        // How far the rest can be trusted (calibrated probabilities).
        if let Some((rows, acc, at)) = &last.estimate {
            if *rows > 0 && last.labels > 0 {
                lines.push(Line::raw(cut(&format!(" rest ~{:.0}% right", acc * 100.0), w)));
                if let Some(e) = last.ece {
                    lines.push(Line::raw(cut(&format!(" held-out ECE {e:.2}"), w)));
                }
                if let Some((t, n, a)) = at.first() {
                    let line = match n {
                        0 => format!(" ≥{t:.1}: no row yet"),
                        1 => format!(" ≥{t:.1}: 1 row ~{:.0}%", a * 100.0),
                        n => format!(" ≥{t:.1}: {} rows ~{:.0}%", thousands(*n), a * 100.0),
                    };
                    lines.push(Line::raw(cut(&line, w)));
                }
            }
        }
        // The stopping signal: the model's labels on the pool stopped changing.
        if let Some(a) = last.agreement {
            if IterationRecord::stable(&app.history) {
                lines.push(Line::styled(cut(" stable: may stop here", w), theme.batch()));
            } else {
                let (t, n) = (crate::learn::stopping::THRESHOLD, crate::learn::stopping::WINDOW);
                lines.push(Line::raw(cut(&format!(" κ {a:.3} · stop ≥{} ×{n}", format!("{t}").trim_start_matches('0')), w)));
            }
        }
        if last.pseudo_labels > 0 {
            lines.push(Line::raw(cut(&format!(" pseudo-labels {}", last.pseudo_labels), w)));
        }
    }
    for t in &team {
        lines.push(Line::raw(cut(t, w)));
    }
    lines.push(Line::raw(cut(&format!(" mode {} · batch {}/{}", app.mode.name(), app.batch_done, app.batch_total()), w)));
    if !app.encoder.is_empty() {
        lines.push(Line::raw(cut(&format!(" {} · {}", app.device, app.encoder), w)));
    }
    // Per-class counts of the person's labels, largest first.
    let mut top: Vec<(usize, usize)> = app.class_counts.iter().copied().enumerate().filter(|c| c.1 > 0).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let classes = top.len();
    if let Some(&(l, c)) = top.first() {
        // The largest class, its count before its name; a name that does
        // not fit goes on a line of its own where the panel has one (else
        // it is cut, once).
        let head = format!(" {classes} {}, top {c}: ", if classes == 1 { "class" } else { "classes" });
        let room = w.saturating_sub(head.chars().count());
        let name = &app.label_names[l];
        if name.chars().count() > room && lines.len() + 2 <= inner_h {
            lines.push(Line::raw(cut(head.trim_end(), w)));
            // Indented as far as a name that fits leaves room for.
            let indent = " ".repeat(if name.width() > w { 2 } else { (w - name.width()).min(2) });
            lines.push(Line::raw(cut(&format!("{indent}{name}"), w)));
        } else {
            lines.push(Line::raw(cut(&format!("{head}{}", cut(name, room.max(1))), w)));
        }
    }
    lines.truncate(inner_h);
    f.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_detail(f: &mut Frame, app: &App, area: Rect, theme: Theme) {
    // Under a label picker, the row it labels (a new ranking may have moved
    // the cursor to another row behind it): the text is the one Enter labels.
    // (So too under a description asked from such a picker.)
    let picker = match &app.overlay {
        Overlay::Picker(p) => Some(p),
        Overlay::Describe { back, .. } => back.as_deref(),
        _ => None,
    };
    let row = match picker.map(|p| p.purpose) {
        Some(PickerPurpose::Label { row, .. }) => Some(row),
        _ => app.selected(),
    };
    let Some(i) = row else {
        f.render_widget(Block::default().borders(Borders::ALL).title(" Row "), area);
        return;
    };
    let mut given = app.labels[i].map(|(l, s)| format!(" · labelled {} ({})", app.label_names[l as usize], s.as_str())).unwrap_or_default();
    // Each annotator's label: for the adjudicator's eyes only (an
    // annotator shown the other's label would no longer judge alone).
    if app.adjudicating && app.view == View::Labelled {
        if let Some(said) = app.dispute_text(i) {
            given = format!(" · {said}");
        }
    }
    if app.review && app.view == View::Labelled {
        if let Some((m, p)) = app.dispute(i) {
            given.push_str(&format!(" · without it: {} {p:.2}", app.label_names[m as usize]));
        }
    }
    let title = cut(&format!(" Row {}{given}", app.row_ids[i]), (area.width as usize).saturating_sub(3)) + " ";
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if inner.height == 0 {
        return;
    }
    // The same layout the state uses to decide which digits work.
    let layout = app.suggestion_layout(i);
    let sugg_h = layout.len().max(1) as u16;
    let [text_area, sugg_area] = Layout::vertical([Constraint::Min(0), Constraint::Length(sugg_h)]).areas(inner);
    // A text longer than its lines says so on its last one (the reader shows it all).
    let (w, h) = (text_area.width as usize, text_area.height as usize);
    let wrapped = super::layout::wrap(&app.texts[i], w);
    if wrapped.len() > h && h > 0 && w > 0 {
        let read = app.keys.keys_of(KeyMode::Views, &Action::Read).first().cloned().unwrap_or_else(|| "v".into());
        let more = format!(" … ({read}: all)");
        let mut shown: Vec<Line> = wrapped[..h - 1].iter().map(|l| Line::raw(l.clone())).collect();
        let last = cut(&wrapped[h - 1], w.saturating_sub(more.width()));
        let last = last.trim_end_matches('…').trim_end().to_string();
        shown.push(Line::from(vec![Span::raw(last), Span::styled(more, theme.dim())]));
        f.render_widget(Paragraph::new(shown), text_area);
    } else {
        // The lines counted are the lines drawn.
        f.render_widget(Paragraph::new(wrapped.into_iter().map(Line::raw).collect::<Vec<_>>()), text_area);
    }
    let mut lines: Vec<Line> = Vec::new();
    for row in &layout {
        let mut spans = Vec::new();
        for (n, s) in row.iter().enumerate() {
            if n > 0 {
                spans.push(Span::raw(" ".repeat(super::layout::GAP)));
            }
            spans.push(Span::styled(format!("{} ", s.digit), theme.fg(Color::Cyan).add_modifier(Modifier::BOLD)));
            spans.push(Span::raw(format!("{} {}", s.name, s.prob)));
        }
        lines.push(Line::from(spans));
    }
    if lines.is_empty() {
        let why = if app.not_embedded(i) { "not embedded yet: no prediction" } else { "no prediction yet" };
        lines.push(Line::styled(why, theme.dim()));
    }
    f.render_widget(Paragraph::new(lines), sugg_area);
}

/// The footer's hints for the current view: (keys, word), most wanted
/// first; help and quit always last.
pub fn footer_hints(app: &App) -> Vec<(String, String)> {
    // None stands for the digits, which take suggestions.
    let digits = |w: &str| ("1-9".to_string(), w.to_string());
    let wanted: Vec<Option<Action>> = match app.view {
        View::Queue => vec![
            Some(Action::Accept),
            None,
            Some(Action::OpenPicker),
            Some(Action::Skip),
            Some(Action::Undo),
            Some(Action::Read),
            Some(Action::NextView),
            Some(Action::Retrain),
        ],
        View::Labelled if app.adjudicating => {
            vec![Some(Action::Accept), None, Some(Action::OpenPicker), Some(Action::Disputes), Some(Action::Read)]
        }
        View::Labelled if app.review => {
            vec![Some(Action::Accept), None, Some(Action::OpenPicker), Some(Action::Review), Some(Action::Read)]
        }
        View::Labelled => {
            vec![None, Some(Action::OpenPicker), Some(Action::Review), Some(Action::Undo), Some(Action::Read), Some(Action::NextView)]
        }
        View::All => vec![
            Some(Action::Search),
            Some(Action::Filter),
            Some(Action::SortConfidence),
            Some(Action::OpenPicker),
            Some(Action::Export),
            Some(Action::NextView),
        ],
    };
    let mut v: Vec<(String, String)> = Vec::new();
    for w in wanted.into_iter().chain([Some(Action::ToggleHelp), Some(Action::Quit)]) {
        match w {
            None => v.push(digits(if app.view == View::Labelled && !app.adjudicating { "relabel" } else { "pick" })),
            Some(a) => {
                if let Some((k, word)) = app.keys.hints(KeyMode::Views, std::slice::from_ref(&a)).into_iter().next() {
                    // In review, accepting keeps the label under review.
                    let word = if app.review && app.view == View::Labelled && a == Action::Accept { "keep" } else { word };
                    v.push((k, word.to_string()));
                }
            }
        }
    }
    v
}

/// Lays out hints in `w` columns: the last two (help, quit) always; the
/// others in order while they fit.
pub fn fit_hints(hints: &[(String, String)], w: usize) -> String {
    let fmt = |h: &(String, String)| format!("{} {}", h.0, h.1);
    let n = hints.len();
    let tail: Vec<String> = hints[n.saturating_sub(2)..].iter().map(fmt).collect();
    let tail_s = tail.join(" · ");
    let mut head: Vec<String> = Vec::new();
    let mut used = tail_s.width() + 1;
    for h in &hints[..n.saturating_sub(2)] {
        let s = fmt(h);
        if used + s.width() + 3 > w {
            break;
        }
        used += s.width() + 3;
        head.push(s);
    }
    head.extend(tail);
    format!(" {}", head.join(" · "))
}

fn draw_footer(f: &mut Frame, app: &App, area: Rect, theme: Theme) {
    let w = area.width as usize;
    // Keys left out are said even over an error: the person must press them again.
    if let Some(m) = &app.ignored {
        f.render_widget(Paragraph::new(cut(&format!(" {m}"), w)).style(theme.fg(Color::Green)), area);
        return;
    }
    if let Some(e) = &app.error {
        f.render_widget(Paragraph::new(cut(&error_line(e, w), w)).style(theme.error()), area);
        return;
    }
    if let Some(m) = &app.message {
        f.render_widget(Paragraph::new(cut(&format!(" {m}"), w)).style(theme.fg(Color::Green)), area);
        return;
    }
    let line = match &app.overlay {
        Overlay::None => fit_hints(&footer_hints(app), w),
        _ => {
            let mode = app.key_mode();
            // Filtering by a label has nothing to describe.
            let filtering = matches!(&app.overlay, Overlay::Picker(p) if p.purpose == PickerPurpose::Filter);
            let hints: Vec<(String, String)> = app
                .keys
                .hints(mode, &[])
                .into_iter()
                .filter(|(_, w)| !(filtering && *w == "describe"))
                .map(|(k, w)| (k, w.to_string()))
                .collect();
            format!(" {}", hints.iter().map(|h| format!("{} {}", h.0, h.1)).collect::<Vec<_>>().join(" · "))
        }
    };
    f.render_widget(Paragraph::new(cut(&line, w)).style(theme.dim()), area);
}

/// An error for a line `w` wide. An error reads what failed first, the
/// cause last ("loading the encoder from DIR: FILE: what is wrong"); where
/// it does not fit, the parts between give way so that both show (the log
/// has it whole).
fn error_line(e: &str, w: usize) -> String {
    let full = format!(" error: {e}");
    if full.width() <= w {
        return full;
    }
    let parts: Vec<&str> = e.split(": ").collect();
    if parts.len() < 2 {
        return full;
    }
    // What failed, then as much of the cause as fits.
    for k in 1..parts.len() {
        let line = format!(" error: {}: …{}", parts[0], parts[k..].join(": "));
        if line.width() <= w {
            return line;
        }
    }
    // What failed, as far as it fits beside the last cause (a label not
    // saved says so first, whatever the cause's length).
    // A label not saved says so first, then as much of the cause as fits.
    let last = parts[parts.len() - 1];
    if let Some(end) = parts[0].find(" not saved").map(|i| i + " not saved".len()) {
        let said = format!("{}…", &parts[0][..end]);
        let room = w.saturating_sub(format!(" error: {said}: ").width());
        if room >= 8 {
            return format!(" error: {said}: {}", cut(last, room));
        }
    }
    format!(" error: …{last}")
}

fn draw_help(f: &mut Frame, app: &App, area: Rect, scroll: usize, _theme: Theme) {
    let help = app.keys.help(app.adjudicator);
    let r = centered(area, 76, help.len() as u16 + 2);
    clear_popup(f, r);
    let w = r.width.saturating_sub(2) as usize;
    let kw = help.iter().map(|(k, _)| k.width()).max().unwrap_or(8).min(18);
    // Where the keys do not all fit (a small terminal), the window from
    // `scroll` (the state keeps it in range), and how to move it.
    let h = r.height.saturating_sub(2) as usize;
    let top = scroll.min(help.len().saturating_sub(h));
    let lines: Vec<Line> = help.iter().skip(top).take(h).map(|(k, d)| Line::raw(cut(&format!(" {k:<kw$} {d}"), w))).collect();
    let keys = |a: &Action| app.keys.keys_of(KeyMode::Help, a).join(" ");
    // How to close it, on its bottom border: always drawn, however many keys.
    let close = if help.len() > h {
        cut(
            &format!(
                " {}-{} of {} · {} {} scroll · {} closes ",
                top + 1,
                top + lines.len(),
                help.len(),
                app.keys.key(KeyMode::Help, &Action::Down),
                app.keys.key(KeyMode::Help, &Action::Up),
                keys(&Action::Cancel)
            ),
            w,
        )
    } else {
        cut(&format!(" entropy in nats (natural log); {} closes ", keys(&Action::Cancel)), w)
    };
    let block = Block::default().borders(Borders::ALL).title(" Keys ").title_bottom(close);
    f.render_widget(Paragraph::new(lines).block(block), r);
}

fn draw_reader(f: &mut Frame, app: &App, area: Rect, row: usize, scroll: usize, _theme: Theme) {
    let r = Rect { x: area.x + 1, y: area.y + 1, width: area.width.saturating_sub(2), height: area.height.saturating_sub(3) };
    clear_popup(f, r);
    let given = app.labels[row].map(|(l, s)| format!(" · {} ({})", app.label_names[l as usize], s.as_str())).unwrap_or_default();
    let close = app.keys.keys_of(KeyMode::Reader, &Action::Cancel).join(" ");
    let block = Block::default().borders(Borders::ALL).title(format!(" Row {}{given} · {close} closes ", app.row_ids[row]));
    let inner = block.inner(r);
    // The whole text, wrapped, from line `scroll` (kept in range by the wrap count).
    let text = app.full_text(row);
    let lines = super::layout::wrap(&text, inner.width as usize);
    let top = scroll.min(lines.len().saturating_sub(inner.height as usize));
    let shown: Vec<Line> = lines.iter().skip(top).take(inner.height as usize).map(|l| Line::raw(l.clone())).collect();
    // Where in the text the window is, when it does not all fit.
    let block = if lines.len() > shown.len() {
        block.title_bottom(format!(" lines {}-{} of {} ", top + 1, top + shown.len(), lines.len()))
    } else {
        block
    };
    f.render_widget(Paragraph::new(shown).block(block), r);
}

fn draw_search(f: &mut Frame, app: &App, area: Rect, query: &str, _theme: Theme) {
    let r = centered(area, 64.min(area.width.saturating_sub(2)), 3);
    clear_popup(f, r);
    let keys = app.keys.hints(KeyMode::Search, &[]).into_iter().map(|(k, w)| format!("{k} {w}")).collect::<Vec<_>>().join(" · ");
    let block = Block::default().borders(Borders::ALL).title(format!(" Search the texts ({keys}) "));
    f.render_widget(Paragraph::new(format!("{query}▏")).block(block), r);
}

fn draw_describe(f: &mut Frame, app: &App, area: Rect, label: u32, text: &str, _theme: Theme) {
    let r = centered(area, 64.min(area.width.saturating_sub(2)), 5);
    clear_popup(f, r);
    let block =
        Block::default().borders(Borders::ALL).title(format!(" Describe '{}' (Enter save · Esc cancel) ", app.label_names[label as usize]));
    f.render_widget(Paragraph::new(format!("{text}▏")).wrap(Wrap { trim: false }).block(block), r);
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_error_keeps_its_cause() {
        let e = "loading the encoder from /tmp/x/bad: /tmp/x/bad/config.json: model type 'gpt2' is not supported";
        assert_eq!(super::error_line(e, 200), format!(" error: {e}"));
        assert_eq!(super::error_line(e, 80), " error: loading the encoder from /tmp/x/bad: …model type 'gpt2' is not supported");
        assert_eq!(super::error_line(e, 50), " error: …model type 'gpt2' is not supported");
        assert_eq!(super::error_line("short", 80), " error: short");
        // A long "what failed" keeps its start beside the cause.
        let e = "the label of row 12 was not saved to session 'trec' (PostgreSQL at db.example.org:5432/labels): db error: FATAL: terminating connection due to administrator command";
        let l = super::error_line(e, 80);
        assert!(l.starts_with(" error: the label of row 12 was not saved…: terminating connection"), "{l}");
        assert!(unicode_width::UnicodeWidthStr::width(l.as_str()) <= 80, "{l}");
    }
}
