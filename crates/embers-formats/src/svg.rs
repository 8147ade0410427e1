//! Interactive SVG flame graphs (hover, click to zoom, regex search) drawn by inferno.

use std::io::Write;

use embers_profile::{DiffTree, Profile};
use inferno::flamegraph::{self, color::MultiPalette, Direction, Options, Palette};

use crate::{folded, FormatError, WriteOptions};

fn base_options(
    profile: &Profile,
    options: &WriteOptions,
    default_title: &str,
) -> Options<'static> {
    let mut opt = Options::default();
    opt.title = options
        .title
        .clone()
        .unwrap_or_else(|| default_title.to_owned());
    // Hover text reads "(750,000,000 nanoseconds, 75%)": the values' unit where it is a
    // measure, the kind of thing counted otherwise.
    let vt = &profile.meta.sample_type;
    opt.count_name = match (vt.unit.as_str(), vt.kind.as_str()) {
        ("" | "count", "") => "samples".to_owned(),
        ("" | "count", kind) => kind.to_owned(),
        (unit, _) => unit.to_owned(),
    };
    if options.icicle {
        opt.direction = Direction::Inverted;
    }
    opt.min_width = options.min_width.unwrap_or(0.1);
    // Colours hashed from names stay the same from one graph to the next.
    opt.colors = Palette::Multi(MultiPalette::Python);
    opt.hash = true;
    opt.deterministic = true;
    opt
}

fn subtitle(profile: &Profile, stacks: usize) -> String {
    let mut s = format!(
        "{} · {} distinct stacks",
        profile.meta.sample_type.format_value(profile.total()),
        stacks
    );
    let (period, unit) = (profile.meta.period, profile.meta.period_type.as_ref());
    if period > 0 && unit.is_some_and(|u| u.unit == "nanoseconds") {
        s.push_str(&format!(" · {} Hz", 1_000_000_000 / period));
    }
    s
}

fn render(opt: &mut Options<'_>, lines: &[String], out: &mut dyn Write) -> Result<(), FormatError> {
    if lines.is_empty() {
        return Err(FormatError::malformed(
            "svg",
            "the profile has no samples: nothing to draw",
        ));
    }
    flamegraph::from_lines(opt, lines.iter().map(String::as_str), out).map_err(FormatError::Io)
}

/// Writes `profile` as a flame graph (or an icicle graph with `options.icicle`).
pub fn write(
    profile: &Profile,
    options: &WriteOptions,
    out: &mut dyn Write,
) -> Result<(), FormatError> {
    let lines = folded::lines(&profile.tree());
    let mut opt = base_options(profile, options, "Flame Graph");
    opt.subtitle = Some(
        options
            .subtitle
            .clone()
            .unwrap_or_else(|| subtitle(profile, lines.len())),
    );
    render(&mut opt, &lines, out)
}

/// Writes the differential flame graph of `before` → `after`: boxes are sized by `after`,
/// red where a stack's share grew, blue where it shrank. `before` is scaled to `after`'s
/// total first, so two recordings of different lengths compare by share, not by count.
pub fn write_diff(
    before: &Profile,
    after: &Profile,
    options: &WriteOptions,
    out: &mut dyn Write,
) -> Result<(), FormatError> {
    let diff = DiffTree::new(&before.tree(), &after.tree());
    let scale = if diff.left_total == 0 {
        0.0
    } else {
        diff.right_total as f64 / diff.left_total as f64
    };
    let mut lines = Vec::with_capacity(diff.stacks.len());
    for (stack, left, right) in &diff.stacks {
        if stack.is_empty() {
            continue;
        }
        let names: Vec<String> = diff
            .frames(stack)
            .map(|f| f.to_string().replace([';', '\n', '\r'], "_"))
            .collect();
        let left = (*left as f64 * scale).round() as u64;
        lines.push(format!("{} {} {}", names.join(";"), left, right));
    }
    lines.sort();
    let mut opt = base_options(after, options, "Differential flame graph");
    opt.subtitle = Some(options.subtitle.clone().unwrap_or_else(|| {
        format!(
            "before: {} · after: {} · red grew, blue shrank (share of total)",
            before.meta.sample_type.format_value(diff.left_total),
            after.meta.sample_type.format_value(diff.right_total),
        )
    }));
    render(&mut opt, &lines, out)
}
