//! Callgrind format for KCacheGrind and `callgrind_annotate`, write only.
//!
//! Each function (name + file) gets its self cost per source line, and one call record per
//! (call-site line, callee) with the inclusive cost of those calls. With sampled data the
//! call counts are estimates: one per distinct call path. A recursive function's calls to
//! itself are left out of the call records, since their cost is already inside the
//! outer call's; callgrind's own tools show inclusive cost for recursion the same way.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use embers_profile::{Frame, NodeId, Profile, StackTree};

use crate::{FormatError, WriteOptions};

/// A function as callgrind sees it: its file and name.
type FnKey = (String, String);

#[derive(Default)]
struct FnCosts {
    /// Self cost per line.
    lines: BTreeMap<u32, u64>,
    /// (call-site line, callee) → (estimated calls, callee's first line, inclusive cost).
    calls: BTreeMap<(u32, FnKey), (u64, u32, u64)>,
}

fn key(frame: &Frame) -> FnKey {
    (
        frame.file.clone().unwrap_or_else(|| "???".to_owned()),
        frame.function.clone(),
    )
}

/// Name compression: the first use of a name gets `(id) name`, later ones `(id)`.
#[derive(Default)]
struct Names(HashMap<String, usize>);

impl Names {
    fn get(&mut self, name: &str) -> String {
        let next = self.0.len() + 1;
        match self.0.get(name) {
            Some(id) => format!("({id})"),
            None => {
                self.0.insert(name.to_owned(), next);
                format!("({next}) {name}")
            }
        }
    }
}

/// Writes `profile` as a callgrind file.
pub fn write(
    profile: &Profile,
    options: &WriteOptions,
    out: &mut dyn Write,
) -> Result<(), FormatError> {
    let tree = profile.tree();
    let mut fns: BTreeMap<FnKey, FnCosts> = BTreeMap::new();
    // Depth-first with the path of function keys, to spot recursion.
    let mut path: Vec<FnKey> = Vec::new();
    let mut todo: Vec<(NodeId, NodeId, usize)> = vec![(StackTree::ROOT, StackTree::ROOT, 0)];
    while let Some((node, parent, depth)) = todo.pop() {
        path.truncate(depth);
        if let Some(frame) = tree.frame(node) {
            let k = key(frame);
            let line = frame.line.unwrap_or(0);
            if tree.self_value(node) > 0 {
                *fns.entry(k.clone())
                    .or_default()
                    .lines
                    .entry(line)
                    .or_default() += tree.self_value(node);
            }
            if let Some(parent) = tree.frame(parent) {
                let caller = key(parent);
                if !path.contains(&k) {
                    let site = parent.line.unwrap_or(0);
                    let entry = fns
                        .entry(caller)
                        .or_default()
                        .calls
                        .entry((site, k.clone()));
                    let call = entry.or_insert((0, line, 0));
                    call.0 += 1;
                    call.1 = call.1.min(line);
                    call.2 += tree.total_value(node);
                }
            }
            fns.entry(k.clone()).or_default();
            path.push(k);
        }
        let depth = path.len();
        tree.push_children_rev(node, &mut todo, |child| (child, node, depth));
    }

    let events = match profile.meta.sample_type.kind.as_str() {
        "" | "samples" => "Samples".to_owned(),
        kind => kind.chars().filter(|c| c.is_ascii_alphanumeric()).collect(),
    };
    let mut w = String::new();
    w.push_str("# callgrind format\nversion: 1\n");
    w.push_str(concat!("creator: embers ", env!("CARGO_PKG_VERSION"), "\n"));
    if let Some(title) = &options.title {
        w.push_str(&format!("cmd: {}\n", title.replace('\n', " ")));
    }
    w.push_str(&format!(
        "positions: line\nevents: {events}\nsummary: {}\n\n",
        tree.total()
    ));
    let (mut files, mut names) = (Names::default(), Names::default());
    for ((file, name), costs) in &fns {
        w.push_str(&format!("fl={}\nfn={}\n", files.get(file), names.get(name)));
        for (line, cost) in &costs.lines {
            w.push_str(&format!("{line} {cost}\n"));
        }
        for ((site, (cfile, cname)), (count, target, cost)) in &costs.calls {
            w.push_str(&format!(
                "cfl={}\ncfn={}\n",
                files.get(cfile),
                names.get(cname)
            ));
            w.push_str(&format!("calls={count} {target}\n{site} {cost}\n"));
        }
        w.push('\n');
    }
    w.push_str(&format!("totals: {}\n", tree.total()));
    out.write_all(w.as_bytes())?;
    Ok(())
}
