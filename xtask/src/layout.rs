//! `cargo xtask layout`: the source tree keeps the shape issue 15 gave it (STYLE rules 11, 12).
//!
//! 1. **No import cycle between files** in `engine/src` and `models/src`. Every `use` item (grouped
//!    `use crate::{a, b::{c, d}}`, globs, renames, `pub use` and `pub(crate) use` included) and
//!    every `crate::…` / `super::…` / `self::…` path in code is resolved to the file that defines
//!    what it names: the deepest module it walks through (`foo.rs`, `foo/mod.rs`, and an inline
//!    `mod x { }` counts as its file), and through a re-export to the file the item comes from
//!    (`crate::snapshot::SnapshotOptions` is `snapshot/task.rs`, not `snapshot/mod.rs`). A
//!    re-export is a pass-through, not a dependency of the file that makes it, unless that file's
//!    code uses the name too: `vfs/mod.rs` re-exporting `SimFs` while `sim_fs.rs` implements
//!    `super::Vfs` is the facade pattern, not a cycle. Each cycle is printed as a chain of files,
//!    every hop with the line that makes it.
//! 2. **No file over [`FILE_LINES_MAX`] lines** in those trees, and **no function over
//!    [`FUNCTION_LINES_MAX`] lines** in `engine/src`, counted from the `fn` line to its closing
//!    brace, unless [`ALLOWED`] lists it with the reason.
//!
//! The scanner is a small lexer (strings, raw strings, chars, lifetimes and nested comments are
//! skipped, so a `"}"` or a commented-out `use` cannot fool it) and a brace-matching walk over its
//! tokens; no `syn`, so the check builds with nothing beyond std. It does not expand macros, follow
//! `#[path]` attributes or look at `$crate` paths (a macro's body is a dependency of the place it
//! expands, which the scanner cannot see); none of these occur in the trees it reads today.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The trees checked for cycles and long files, relative to the workspace root.
const TREES: &[&str] = &["engine/src", "models/src"];
/// The trees whose functions are checked for length (issue 15 asks it of the engine only).
const FUNCTION_TREES: &[&str] = &["engine/src"];
/// A file longer than this is doing more than one job (issue 15).
pub const FILE_LINES_MAX: usize = 800;
/// STYLE rule 12: past ~100 lines, split a function along the steps its comments number.
pub const FUNCTION_LINES_MAX: usize = 100;

/// One exception to the length limits: a file (`function: None`) or a function in `path`, named
/// `Type::method` for a method or an associated function, plain `name` otherwise.
pub struct Allowed {
    pub path: &'static str,
    pub function: Option<&'static str>,
    pub why: &'static str,
}

/// The exceptions, each with its reason. An entry that no longer matches anything over the limit
/// fails the check too, so that the list only ever holds live exceptions.
///
/// The engine's long files and functions are not here: issue 15's engine split removes them.
pub const ALLOWED: &[Allowed] = &[
    Allowed {
        path: "models/src/snapshot.rs",
        function: None,
        why: "a stateright model is one file: State, Action, properties, seeded bugs and the \
              registry entry read together (STYLE anchors: stateright examples)",
    },
    Allowed {
        path: "models/src/cluster.rs",
        function: None,
        why: "a stateright model is one file: the actors, their messages, properties and seeded \
              bugs read together (STYLE anchors: stateright examples)",
    },
    Allowed {
        path: "models/src/snapshot_trace.rs",
        function: None,
        why: "trace validation is one mapping, engine event -> model action, with the abstraction \
              its module doc defines; splitting it would separate each event from its check",
    },
];

/// `cargo xtask layout`: runs the check on the workspace at `root` and prints what it found.
pub fn layout(root: &Path) -> ExitCode {
    match check(root, TREES, FUNCTION_TREES, ALLOWED) {
        Ok(report) => {
            print!("{}", report.render());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(message) => {
            eprintln!("xtask layout: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What the check found.
#[derive(Debug, Default)]
pub struct Report {
    pub files_scanned: usize,
    pub imports_resolved: usize,
    /// Each set of files that import each other (a strongly connected component of the graph).
    pub tangles: Vec<Vec<String>>,
    /// Each cycle as a chain of hops; the last hop leads back to the first file.
    pub cycles: Vec<Vec<Hop>>,
    /// (path, lines) of files over the limit and not allowed.
    pub long_files: Vec<(String, usize)>,
    pub long_functions: Vec<LongFunction>,
    /// Allow-list entries that match nothing over a limit.
    pub stale_allowed: Vec<String>,
    /// Allow-list entries in use, with their reasons (shown, so that the debt stays visible).
    pub exceptions: Vec<String>,
    /// Things the scanner could not place (a `mod x;` without a file, a file no crate declares).
    pub notes: Vec<String>,
}

/// One import edge of a cycle: `from` imports from `to` at `line` (`text` is the path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    pub from: String,
    pub to: String,
    pub line: usize,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LongFunction {
    pub path: String,
    pub name: String,
    pub line: usize,
    pub lines: usize,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.cycles.is_empty()
            && self.long_files.is_empty()
            && self.long_functions.is_empty()
            && self.stale_allowed.is_empty()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "layout: {} files, {} imports resolved to files",
            self.files_scanned, self.imports_resolved
        );
        if !self.cycles.is_empty() {
            let _ = writeln!(
                out,
                "\nimport cycles between files ({}); imports must run one way, down:",
                self.cycles.len()
            );
            for tangle in &self.tangles {
                let _ = writeln!(
                    out,
                    "  {} files import each other: {}",
                    tangle.len(),
                    tangle.join(", ")
                );
            }
            for cycle in &self.cycles {
                let mut chain: Vec<&str> = cycle.iter().map(|hop| hop.from.as_str()).collect();
                chain.push(&cycle[0].from);
                let _ = writeln!(out, "  cycle: {}", chain.join(" -> "));
                for hop in cycle {
                    let _ = writeln!(
                        out,
                        "      {}:{} imports {} ({})",
                        hop.from, hop.line, hop.text, hop.to
                    );
                }
            }
        }
        if !self.long_files.is_empty() {
            let _ = writeln!(out, "\nfiles over {FILE_LINES_MAX} lines:");
            for (path, lines) in &self.long_files {
                let _ = writeln!(out, "  {path}: {lines} lines");
            }
        }
        if !self.long_functions.is_empty() {
            let _ = writeln!(out, "\nfunctions over {FUNCTION_LINES_MAX} lines:");
            for function in &self.long_functions {
                let _ = writeln!(
                    out,
                    "  {}:{} fn {}: {} lines",
                    function.path, function.line, function.name, function.lines
                );
            }
        }
        if !self.stale_allowed.is_empty() {
            let _ = writeln!(
                out,
                "\nallow-list entries in xtask/src/layout.rs that match nothing (remove them):"
            );
            for entry in &self.stale_allowed {
                let _ = writeln!(out, "  {entry}");
            }
        }
        if !self.exceptions.is_empty() {
            let _ = writeln!(out, "\nallowed (xtask/src/layout.rs, ALLOWED):");
            for exception in &self.exceptions {
                let _ = writeln!(out, "  {exception}");
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let _ = writeln!(
            out,
            "\nlayout: {}",
            if self.passed() {
                "ok".to_string()
            } else {
                format!(
                    "FAILED ({} cycles, {} long files, {} long functions, {} stale allow-list entries)",
                    self.cycles.len(),
                    self.long_files.len(),
                    self.long_functions.len(),
                    self.stale_allowed.len()
                )
            }
        );
        out
    }
}

/// Checks `trees` (and the functions of `function_trees`) under `root` against `allowed`.
pub fn check(
    root: &Path,
    trees: &[&str],
    function_trees: &[&str],
    allowed: &[Allowed],
) -> Result<Report, String> {
    let mut report = Report::default();
    let mut used_allowances = BTreeSet::new();
    for tree in trees {
        let graph = Graph::load(root, tree)?;
        report.files_scanned += graph.files.len();
        report.notes.extend(graph.notes.iter().cloned());
        let edges = graph.edges();
        report.imports_resolved += edges.len();
        let (tangles, cycles) = cycles(&graph, &edges);
        report.tangles.extend(tangles);
        report.cycles.extend(cycles);
        for file in &graph.files {
            if file.scan.lines > FILE_LINES_MAX {
                match allowance(allowed, &file.display, None) {
                    Some(index) => {
                        used_allowances.insert(index);
                    }
                    None => report
                        .long_files
                        .push((file.display.clone(), file.scan.lines)),
                }
            }
            if !function_trees.contains(tree) {
                continue;
            }
            for function in &file.scan.functions {
                let lines = function.last_line + 1 - function.line;
                if lines <= FUNCTION_LINES_MAX {
                    continue;
                }
                match allowance(allowed, &file.display, Some(&function.name)) {
                    Some(index) => {
                        used_allowances.insert(index);
                    }
                    None => report.long_functions.push(LongFunction {
                        path: file.display.clone(),
                        name: function.name.clone(),
                        line: function.line,
                        lines,
                    }),
                }
            }
        }
    }
    for (index, entry) in allowed.iter().enumerate() {
        let in_checked_tree = trees.iter().any(|tree| entry.path.starts_with(tree));
        let name = match entry.function {
            Some(function) => format!("{} fn {function}", entry.path),
            None => entry.path.to_string(),
        };
        if used_allowances.contains(&index) {
            report.exceptions.push(format!("{name}: {}", entry.why));
        } else if in_checked_tree {
            report.stale_allowed.push(name);
        }
    }
    Ok(report)
}

fn allowance(allowed: &[Allowed], path: &str, function: Option<&str>) -> Option<usize> {
    allowed
        .iter()
        .position(|entry| entry.path == path && entry.function == function)
}

// ---- the lexer ------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ident,
    Punct,
    /// A string, char or number literal (its text is not kept) or a lifetime.
    Literal,
}

#[derive(Clone, Debug)]
struct Token {
    kind: Kind,
    text: String,
    line: usize,
}

impl Token {
    fn is(&self, text: &str) -> bool {
        self.kind != Kind::Literal && self.text == text
    }
}

/// Splits Rust source into identifiers, punctuation (`::`, `->` and `=>` as one token) and
/// literals, dropping comments and whitespace.
fn lex(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        let start_line = line;
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if let Some(after_prefix) = raw_string_start(&chars, i) {
            // r"…", r#"…"#, br"…", cr#"…"#: no escapes, ends at `"` and as many `#`.
            let hashes = after_prefix - i - raw_prefix_len(&chars, i) - 1;
            i = after_prefix;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '\n' {
                    line += 1;
                }
                if chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            tokens.push(literal(start_line));
        } else if c == '"' || ((c == 'b' || c == 'c') && at(i + 1) == '"') {
            i += if c == '"' { 1 } else { 2 };
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if at(i) == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 1;
            tokens.push(literal(start_line));
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            let quote = if c == '\'' { i } else { i + 1 };
            if at(quote + 1) == '\\' {
                // An escaped char: '\n', '\'', '\u{1F600}'.
                i = quote + 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(quote + 2) == '\'' {
                // A plain char, '{' and '"' included.
                i = quote + 3;
            } else {
                // A lifetime or a label: 'a, 'static.
                i = quote + 1;
                while is_ident_char(at(i)) {
                    i += 1;
                }
            }
            tokens.push(literal(start_line));
        } else if c == 'r' && at(i + 1) == '#' && is_ident_start(at(i + 2)) {
            let start = i + 2;
            i = start;
            while is_ident_char(at(i)) {
                i += 1;
            }
            tokens.push(Token {
                kind: Kind::Ident,
                text: chars[start..i].iter().collect(),
                line,
            });
        } else if is_ident_start(c) {
            let start = i;
            while is_ident_char(at(i)) {
                i += 1;
            }
            tokens.push(Token {
                kind: Kind::Ident,
                text: chars[start..i].iter().collect(),
                line,
            });
        } else if c.is_ascii_digit() {
            while is_ident_char(at(i)) || (at(i) == '.' && at(i + 1).is_ascii_digit()) {
                i += 1;
            }
            tokens.push(literal(start_line));
        } else {
            let pair: String = [c, at(i + 1)].iter().collect();
            let text = if pair == "::" || pair == "->" || pair == "=>" {
                pair
            } else {
                c.to_string()
            };
            i += text.chars().count();
            tokens.push(Token {
                kind: Kind::Punct,
                text,
                line,
            });
        }
    }
    tokens
}

fn literal(line: usize) -> Token {
    Token {
        kind: Kind::Literal,
        text: String::new(),
        line,
    }
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Length of the `r`, `br` or `cr` prefix of a raw string at `i`, 0 if there is none.
fn raw_prefix_len(chars: &[char], i: usize) -> usize {
    match (chars.get(i), chars.get(i + 1)) {
        (Some('r'), _) => 1,
        (Some('b' | 'c'), Some('r')) => 2,
        _ => 0,
    }
}

/// If a raw string starts at `i`, the index just past its opening `"`.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    if i > 0 && is_ident_char(chars[i - 1]) {
        return None;
    }
    let prefix = raw_prefix_len(chars, i);
    if prefix == 0 {
        return None;
    }
    let mut j = i + prefix;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some(j + 1)
}

// ---- one file's scan --------------------------------------------------------------------------

/// A path one file names: a `use` leaf or a `crate::`/`super::`/`self::` path in code.
#[derive(Clone, Debug)]
struct PathRef {
    /// The inline modules (`mod x { … }`) the path sits in, outermost first.
    scope: Vec<String>,
    segments: Vec<String>,
    line: usize,
    /// From a `use` item (`false`: a path in code).
    is_use: bool,
    /// `use …::*`.
    glob: bool,
    /// The name a `use` binds (its last segment or its `as` rename; `None` for globs and `as _`).
    binds: Option<String>,
    /// `pub use`, `pub(crate) use`, …: a re-export.
    reexport: bool,
}

#[derive(Clone, Debug)]
struct Function {
    /// `Type::name` inside an `impl` or `trait` block, `name` otherwise.
    name: String,
    line: usize,
    last_line: usize,
}

#[derive(Debug, Default)]
struct FileScan {
    lines: usize,
    /// `mod name;` declarations: (inline scope, name).
    mod_decls: Vec<(Vec<String>, String)>,
    /// Every inline module, as its full inline scope.
    inline_mods: Vec<Vec<String>>,
    paths: Vec<PathRef>,
    functions: Vec<Function>,
    /// Identifiers outside `use` items: whether a file uses a name it re-exports.
    idents_in_code: BTreeSet<String>,
}

enum Frame {
    Module(String),
    Function(usize),
    Impl(String),
    Other,
}

enum Pending {
    Module(String),
    Function(Function),
    Impl(String),
}

fn scan(source: &str) -> FileScan {
    let tokens = lex(source);
    let mut out = FileScan {
        lines: source.lines().count(),
        ..FileScan::default()
    };
    let mut frames: Vec<Frame> = Vec::new();
    // The item a following `{` opens, and the paren/bracket depth it was announced at.
    let mut pending: Option<(Pending, usize)> = None;
    let mut paren_depth = 0usize;
    let scope_of = |frames: &[Frame]| -> Vec<String> {
        frames
            .iter()
            .filter_map(|frame| match frame {
                Frame::Module(name) => Some(name.clone()),
                _ => None,
            })
            .collect()
    };
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        let next = tokens.get(i + 1);
        let previous = i.checked_sub(1).map(|p| &tokens[p]);
        match (token.kind, token.text.as_str()) {
            (Kind::Ident, "use") => {
                let reexport = previous.is_some_and(|p| p.is("pub") || p.is(")"));
                let scope = scope_of(&frames);
                i += 1;
                let mut leaves = Vec::new();
                parse_use_tree(&tokens, &mut i, Vec::new(), &mut leaves);
                while i < tokens.len() && !tokens[i].is(";") {
                    i += 1;
                }
                for (segments, glob, binds, line) in leaves {
                    out.paths.push(PathRef {
                        scope: scope.clone(),
                        segments,
                        line,
                        is_use: true,
                        glob,
                        binds,
                        reexport,
                    });
                }
            }
            (Kind::Ident, "mod") if next.is_some_and(|n| n.kind == Kind::Ident) => {
                let name = tokens[i + 1].text.clone();
                if tokens.get(i + 2).is_some_and(|t| t.is(";")) {
                    out.mod_decls.push((scope_of(&frames), name));
                } else {
                    let mut scope = scope_of(&frames);
                    scope.push(name.clone());
                    out.inline_mods.push(scope);
                    pending = Some((Pending::Module(name), paren_depth));
                }
                i += 2;
                continue;
            }
            (Kind::Ident, "fn") if next.is_some_and(|n| n.kind == Kind::Ident) => {
                let name = &tokens[i + 1].text;
                let owner = frames.iter().rev().find_map(|frame| match frame {
                    Frame::Impl(owner) => Some(Some(owner)),
                    Frame::Function(_) => Some(None),
                    _ => None,
                });
                let name = match owner.flatten() {
                    Some(owner) => format!("{owner}::{name}"),
                    None => name.clone(),
                };
                let function = Function {
                    name,
                    line: token.line,
                    last_line: token.line,
                };
                pending = Some((Pending::Function(function), paren_depth));
                out.idents_in_code.insert(tokens[i + 1].text.clone());
                i += 2;
                continue;
            }
            (Kind::Ident, "impl") if previous.is_none_or(starts_item) => {
                pending = Some((Pending::Impl(impl_type(&tokens, i + 1)), paren_depth));
            }
            (Kind::Ident, "trait") if next.is_some_and(|n| n.kind == Kind::Ident) => {
                pending = Some((Pending::Impl(tokens[i + 1].text.clone()), paren_depth));
            }
            (Kind::Ident, "crate" | "super" | "self")
                if next.is_some_and(|n| n.is("::"))
                    && !previous.is_some_and(|p| p.is("$") || p.is("in")) =>
            {
                let mut segments = vec![token.text.clone()];
                let mut j = i + 1;
                while tokens.get(j).is_some_and(|t| t.is("::"))
                    && tokens.get(j + 1).is_some_and(|t| t.kind == Kind::Ident)
                {
                    segments.push(tokens[j + 1].text.clone());
                    j += 2;
                }
                for segment in &segments {
                    out.idents_in_code.insert(segment.clone());
                }
                out.paths.push(PathRef {
                    scope: scope_of(&frames),
                    segments,
                    line: token.line,
                    is_use: false,
                    glob: false,
                    binds: None,
                    reexport: false,
                });
                i = j;
                continue;
            }
            (Kind::Ident, _) => {
                out.idents_in_code.insert(token.text.clone());
            }
            (Kind::Punct, "(" | "[") => paren_depth += 1,
            (Kind::Punct, ")" | "]") => paren_depth = paren_depth.saturating_sub(1),
            // `fn f();` in a trait, `mod x;`: the item has no body.
            (Kind::Punct, ";")
                if pending
                    .as_ref()
                    .is_some_and(|(_, depth)| *depth == paren_depth) =>
            {
                pending = None;
            }
            (Kind::Punct, "{") => {
                let frame = match pending.take() {
                    Some((item, depth)) if depth == paren_depth => match item {
                        Pending::Module(name) => Frame::Module(name),
                        Pending::Impl(name) => Frame::Impl(name),
                        Pending::Function(function) => {
                            out.functions.push(function);
                            Frame::Function(out.functions.len() - 1)
                        }
                    },
                    other => {
                        pending = other;
                        Frame::Other
                    }
                };
                frames.push(frame);
            }
            (Kind::Punct, "}") => {
                if let Some(Frame::Function(index)) = frames.pop() {
                    out.functions[index].last_line = token.line;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Whether `impl` after this token starts an item (not `-> impl Trait` or `x: impl Trait`).
fn starts_item(previous: &Token) -> bool {
    ["}", ";", "{", "]", "unsafe"]
        .iter()
        .any(|text| previous.is(text))
}

/// The type an `impl` block is for: `impl<T> Trait for Type<T> where … {` gives `Type`.
fn impl_type(tokens: &[Token], mut i: usize) -> String {
    if tokens.get(i).is_some_and(|t| t.is("<")) {
        let mut depth = 0;
        while let Some(token) = tokens.get(i) {
            if token.is("<") {
                depth += 1;
            } else if token.is(">") {
                depth -= 1;
            }
            i += 1;
            if depth == 0 {
                break;
            }
        }
    }
    let header_end = (i..tokens.len())
        .find(|&j| tokens[j].is("{") || tokens[j].is("where") || tokens[j].is(";"))
        .unwrap_or(tokens.len());
    // `impl Trait for Type`: the type follows the `for` outside angle brackets.
    let mut angle = 0i32;
    let mut type_start = i;
    for (j, token) in tokens.iter().enumerate().take(header_end).skip(i) {
        if token.is("<") {
            angle += 1;
        } else if token.is(">") {
            angle -= 1;
        } else if angle == 0 && token.is("for") {
            type_start = j + 1;
        }
    }
    let mut name = String::from("?");
    for token in &tokens[type_start..header_end] {
        if token.is("<") {
            break;
        }
        if token.kind == Kind::Ident && !["dyn", "mut"].contains(&token.text.as_str()) {
            name = token.text.clone();
        }
    }
    name
}

type UseLeaf = (Vec<String>, bool, Option<String>, usize);

/// Parses one use tree at `tokens[*i]` under `prefix`, pushing each leaf as (segments, glob,
/// bound name, line).
fn parse_use_tree(
    tokens: &[Token],
    i: &mut usize,
    mut prefix: Vec<String>,
    out: &mut Vec<UseLeaf>,
) {
    loop {
        let Some(token) = tokens.get(*i) else { return };
        if token.is("::") {
            // `use ::std::…`: an extern crate, never this one.
            prefix.push("::".to_string());
            *i += 1;
        } else if token.is("{") {
            *i += 1;
            while let Some(token) = tokens.get(*i) {
                if token.is("}") {
                    *i += 1;
                    break;
                }
                if token.is(",") {
                    *i += 1;
                    continue;
                }
                let before = *i;
                parse_use_tree(tokens, i, prefix.clone(), out);
                if *i == before {
                    *i += 1;
                }
            }
            return;
        } else if token.is("*") {
            *i += 1;
            out.push((prefix, true, None, token.line));
            return;
        } else if token.kind == Kind::Ident {
            prefix.push(token.text.clone());
            *i += 1;
            if tokens.get(*i).is_some_and(|t| t.is("::")) {
                *i += 1;
                continue;
            }
            let mut binds = if prefix.last().is_some_and(|s| s == "self") {
                prefix.pop();
                prefix.last().cloned()
            } else {
                prefix.last().cloned()
            };
            if tokens.get(*i).is_some_and(|t| t.is("as")) {
                binds = tokens
                    .get(*i + 1)
                    .filter(|t| t.kind == Kind::Ident && t.text != "_")
                    .map(|t| t.text.clone());
                *i += 2;
            }
            out.push((prefix, false, binds, token.line));
            return;
        } else {
            return;
        }
    }
}

// ---- the module tree and the file graph -----------------------------------------------------

struct SourceFile {
    /// Path relative to the workspace root, with `/`.
    display: String,
    scan: FileScan,
    /// The module the file is, `[crate key, …]`; empty until a crate declares the file.
    module: Vec<String>,
}

#[derive(Default)]
struct Module {
    file: usize,
    children: BTreeSet<String>,
    /// Names bound by `use` items in the module: name -> index into its file's paths.
    bindings: HashMap<String, usize>,
}

struct Graph {
    files: Vec<SourceFile>,
    modules: HashMap<Vec<String>, Module>,
    notes: Vec<String>,
}

impl Graph {
    fn load(root: &Path, tree: &str) -> Result<Graph, String> {
        let dir = root.join(tree);
        let mut paths = Vec::new();
        collect_rs(&dir, &mut paths)?;
        paths.sort();
        let mut files = Vec::new();
        for path in &paths {
            let source = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let relative = path.strip_prefix(root).unwrap_or(path);
            files.push(SourceFile {
                display: relative.to_string_lossy().replace('\\', "/"),
                scan: scan(&source),
                module: Vec::new(),
            });
        }
        let mut graph = Graph {
            files,
            modules: HashMap::new(),
            notes: Vec::new(),
        };
        // Crate roots: the library, the binary, and each `bin/x.rs` (its own crate, `bin:x`).
        let mut queue = VecDeque::new();
        for (index, path) in paths.iter().enumerate() {
            let relative = path.strip_prefix(&dir).unwrap_or(path);
            let key = match relative.to_string_lossy().replace('\\', "/").as_str() {
                "lib.rs" => "lib".to_string(),
                "main.rs" => "main".to_string(),
                other => match other
                    .strip_prefix("bin/")
                    .and_then(|b| b.strip_suffix(".rs"))
                {
                    Some(name) if !name.contains('/') => format!("bin:{name}"),
                    _ => continue,
                },
            };
            graph.files[index].module = vec![key];
            queue.push_back(index);
        }
        while let Some(index) = queue.pop_front() {
            let module = graph.files[index].module.clone();
            graph.modules.insert(
                module.clone(),
                Module {
                    file: index,
                    ..Module::default()
                },
            );
            for inline in graph.files[index].scan.inline_mods.clone() {
                let path = [module.clone(), inline].concat();
                graph.add_module(path, index);
            }
            let owns_directory = paths[index]
                .file_name()
                .is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs")
                || is_crate_root(&graph.files[index].module);
            let children_dir = if owns_directory {
                paths[index].parent().map(Path::to_path_buf)
            } else {
                paths[index]
                    .parent()
                    .zip(paths[index].file_stem())
                    .map(|(p, s)| p.join(s))
            }
            .unwrap_or_default();
            for (scope, name) in graph.files[index].scan.mod_decls.clone() {
                let dir = scope.iter().fold(children_dir.clone(), |d, s| d.join(s));
                let candidates = [
                    dir.join(format!("{name}.rs")),
                    dir.join(&name).join("mod.rs"),
                ];
                let found = candidates
                    .iter()
                    .find_map(|c| paths.iter().position(|p| p == c));
                let Some(child) = found else {
                    graph.notes.push(format!(
                        "{}: `mod {name};` has no file ({} or {})",
                        graph.files[index].display,
                        candidates[0].display(),
                        candidates[1].display()
                    ));
                    continue;
                };
                if !graph.files[child].module.is_empty() {
                    continue;
                }
                let path = [module.clone(), scope, vec![name]].concat();
                graph.files[child].module = path.clone();
                if let Some(parent) = graph.modules.get_mut(&path[..path.len() - 1]) {
                    parent.children.insert(path[path.len() - 1].clone());
                }
                queue.push_back(child);
            }
        }
        for file in &graph.files {
            if file.module.is_empty() {
                graph.notes.push(format!(
                    "{}: no crate declares this file (not checked)",
                    file.display
                ));
                continue;
            }
            for (path_index, path) in file.scan.paths.iter().enumerate() {
                if let Some(name) = path.binds.as_ref().filter(|_| path.is_use) {
                    let module = [file.module.clone(), path.scope.clone()].concat();
                    if let Some(module) = graph.modules.get_mut(&module) {
                        module.bindings.insert(name.clone(), path_index);
                    }
                }
            }
        }
        Ok(graph)
    }

    fn add_module(&mut self, path: Vec<String>, file: usize) {
        if let Some(parent) = self.modules.get_mut(&path[..path.len() - 1]) {
            parent.children.insert(path[path.len() - 1].clone());
        }
        self.modules.entry(path).or_insert_with(|| Module {
            file,
            ..Module::default()
        });
    }

    /// The file that defines what `segments` names, seen from module `scope`; `None` for a path
    /// into another crate.
    fn resolve(&self, scope: &[String], segments: &[String], depth: usize) -> Option<usize> {
        let first = segments.first()?;
        let (mut current, rest): (Vec<String>, &[String]) = match first.as_str() {
            "crate" => (scope[..1].to_vec(), &segments[1..]),
            "self" => (scope.to_vec(), &segments[1..]),
            "super" => {
                let supers = segments.iter().take_while(|s| *s == "super").count();
                let keep = scope.len().checked_sub(supers).filter(|k| *k >= 1)?;
                (scope[..keep].to_vec(), &segments[supers..])
            }
            "::" => return None,
            name => {
                let module = self.modules.get(scope)?;
                if module.children.contains(name) {
                    (scope.to_vec(), segments)
                } else if let Some(&binding) = module.bindings.get(name) {
                    return self.through_binding(scope, binding, &segments[1..], depth);
                } else {
                    return None;
                }
            }
        };
        let mut rest = rest;
        while let Some(segment) = rest.first() {
            let module = self.modules.get(&current)?;
            if module.children.contains(segment) {
                current.push(segment.clone());
                rest = &rest[1..];
            } else {
                break;
            }
        }
        let module = self.modules.get(&current)?;
        if let Some(&binding) = rest.first().and_then(|name| module.bindings.get(name)) {
            if let Some(file) = self.through_binding(&current, binding, &rest[1..], depth) {
                return Some(file);
            }
        }
        Some(module.file)
    }

    /// Follows the `use` binding `binding` of module `module`, then `rest`.
    fn through_binding(
        &self,
        module: &[String],
        binding: usize,
        rest: &[String],
        depth: usize,
    ) -> Option<usize> {
        if depth > 16 {
            return None;
        }
        let file = self.modules.get(module)?.file;
        let path = &self.files[file].scan.paths[binding];
        let target = [path.segments.clone(), rest.to_vec()].concat();
        let scope = [self.files[file].module.clone(), path.scope.clone()].concat();
        self.resolve(&scope, &target, depth + 1)
    }

    /// File-level import edges: (from, to) -> the first line that makes it and its path.
    fn edges(&self) -> BTreeMap<(usize, usize), (usize, String)> {
        let mut edges = BTreeMap::new();
        for (from, file) in self.files.iter().enumerate() {
            if file.module.is_empty() {
                continue;
            }
            for path in &file.scan.paths {
                // A re-export the file's own code does not use is a pass-through: importers
                // resolve through it to the defining file.
                let pass_through = path.reexport
                    && path
                        .binds
                        .as_ref()
                        .is_some_and(|name| !file.scan.idents_in_code.contains(name));
                if pass_through {
                    continue;
                }
                let scope = [file.module.clone(), path.scope.clone()].concat();
                let Some(to) = self.resolve(&scope, &path.segments, 0) else {
                    continue;
                };
                if to != from {
                    let mut text = path.segments.join("::");
                    if path.glob {
                        text.push_str("::*");
                    }
                    edges.entry((from, to)).or_insert((path.line, text));
                }
            }
        }
        edges
    }
}

/// A crate root's `mod x;` is looked up beside it, like `lib.rs`'s (`bin/x.rs` too).
fn is_crate_root(module: &[String]) -> bool {
    module.len() == 1
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            collect_rs(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

// ---- cycles ---------------------------------------------------------------------------------

/// The cycles of the file graph: for each strongly connected component of more than one file,
/// enough cycles (each the shortest one through some edge) that every import inside the component
/// shows in one of them.
/// Returns the components' files and the cycles.
fn cycles(
    graph: &Graph,
    edges: &BTreeMap<(usize, usize), (usize, String)>,
) -> (Vec<Vec<String>>, Vec<Vec<Hop>>) {
    let count = graph.files.len();
    let mut successors = vec![Vec::new(); count];
    for &(from, to) in edges.keys() {
        successors[from].push(to);
    }
    let mut tangles = Vec::new();
    let mut result = Vec::new();
    for component in strongly_connected(&successors) {
        if component.len() < 2 {
            continue;
        }
        tangles.push(
            component
                .iter()
                .map(|&file| graph.files[file].display.clone())
                .collect(),
        );
        let inside: BTreeSet<usize> = component.iter().copied().collect();
        let mut covered = BTreeSet::new();
        for &(from, to) in edges.keys() {
            if !inside.contains(&from) || !inside.contains(&to) || covered.contains(&(from, to)) {
                continue;
            }
            let Some(back) = shortest_path(&successors, &inside, to, from) else {
                continue;
            };
            let mut chain = vec![from];
            chain.extend(back);
            let hops: Vec<Hop> = chain
                .windows(2)
                .map(|pair| {
                    covered.insert((pair[0], pair[1]));
                    let (line, text) = &edges[&(pair[0], pair[1])];
                    Hop {
                        from: graph.files[pair[0]].display.clone(),
                        to: graph.files[pair[1]].display.clone(),
                        line: *line,
                        text: text.clone(),
                    }
                })
                .collect();
            result.push(hops);
        }
    }
    (tangles, result)
}

/// Tarjan's algorithm, iterative.
fn strongly_connected(successors: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let count = successors.len();
    let mut index_of = vec![usize::MAX; count];
    let mut low = vec![0; count];
    let mut on_stack = vec![false; count];
    let mut stack = Vec::new();
    let mut components = Vec::new();
    let mut next_index = 0;
    for start in 0..count {
        if index_of[start] != usize::MAX {
            continue;
        }
        let mut work = vec![(start, 0usize)];
        while let Some(&mut (node, ref mut child)) = work.last_mut() {
            if *child == 0 && index_of[node] == usize::MAX {
                index_of[node] = next_index;
                low[node] = next_index;
                next_index += 1;
                stack.push(node);
                on_stack[node] = true;
            }
            if let Some(&next) = successors[node].get(*child) {
                *child += 1;
                if index_of[next] == usize::MAX {
                    work.push((next, 0));
                } else if on_stack[next] {
                    low[node] = low[node].min(index_of[next]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index_of[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                component.sort();
                components.push(component);
            }
        }
    }
    components.sort();
    components
}

/// The shortest path `from` ..= `to` inside `inside` (breadth first).
fn shortest_path(
    successors: &[Vec<usize>],
    inside: &BTreeSet<usize>,
    from: usize,
    to: usize,
) -> Option<Vec<usize>> {
    let mut previous = HashMap::new();
    let mut queue = VecDeque::from([from]);
    previous.insert(from, from);
    while let Some(node) = queue.pop_front() {
        if node == to {
            let mut path = vec![to];
            let mut at = to;
            while at != from {
                at = previous[&at];
                path.push(at);
            }
            path.reverse();
            return Some(path);
        }
        for &next in &successors[node] {
            if inside.contains(&next) && !previous.contains_key(&next) {
                previous.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` (path under the root, source) into a fresh directory.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        for (path, source) in files {
            let path = root.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, source).expect("write");
        }
        root
    }

    fn run(files: &[(&str, &str)], allowed: &[Allowed]) -> Report {
        let root = tree(files);
        let report = check(root.path(), &["src"], &["src"], allowed).expect("check");
        println!("{}", report.render());
        report
    }

    const LIB: (&str, &str) = ("src/lib.rs", "mod a;\nmod b;\n");
    const A: (&str, &str) = (
        "src/a.rs",
        "use crate::b::B;\n\npub struct A(B);\n\nmod tests {\n    use super::*;\n}\n",
    );

    #[test]
    fn a_back_import_is_a_cycle_printed_as_a_chain_of_files() {
        let b = ("src/b.rs", "pub struct B;\nuse super::a::A;\n");
        let report = run(&[LIB, A, b], &[]);
        assert!(!report.passed());
        assert_eq!(report.cycles.len(), 1, "{report:?}");
        let rendered = report.render();
        assert!(
            rendered.contains("cycle: src/a.rs -> src/b.rs -> src/a.rs"),
            "{rendered}"
        );
        assert!(rendered.contains("src/a.rs:1 imports crate::b::B (src/b.rs)"));
        assert!(rendered.contains("src/b.rs:2 imports super::a::A (src/a.rs)"));
    }

    #[test]
    fn imports_that_run_one_way_are_clean() {
        let b = ("src/b.rs", "pub struct B;\n");
        let report = run(&[LIB, A, b], &[]);
        assert!(report.passed(), "{report:?}");
        assert_eq!(report.imports_resolved, 1);
    }

    /// Grouped `use`, `self` in a group, `pub(crate) use` re-exports, `mod.rs`, an inline module
    /// and a `crate::` path in code: `store.rs` imports `Frame` through `net/mod.rs`'s re-export,
    /// so the cycle is between the two files that define what the other uses.
    #[test]
    fn grouped_imports_and_reexports_resolve_to_the_defining_file() {
        let lib = ("src/lib.rs", "mod net;\nmod store;\n");
        let net = (
            "src/net/mod.rs",
            "mod wire;\npub(crate) use wire::Frame;\npub struct Socket;\n",
        );
        let wire = (
            "src/net/wire.rs",
            "pub struct Frame;\nmod inner {\n    fn f() -> usize {\n        \
             crate::store::Store::pages()\n    }\n}\n",
        );
        let store = (
            "src/store.rs",
            "use crate::{net::{self, Frame}, net::Socket as _};\npub struct Store;\n",
        );
        let report = run(&[lib, net, wire, store], &[]);
        assert_eq!(report.cycles.len(), 1, "{report:?}");
        let rendered = report.render();
        assert!(
            rendered.contains("cycle: src/net/wire.rs -> src/store.rs -> src/net/wire.rs"),
            "{rendered}"
        );
        assert!(rendered.contains("src/net/wire.rs:4 imports crate::store::Store"));
        assert!(rendered.contains("src/store.rs:1 imports crate::net::Frame (src/net/wire.rs)"));
        assert_eq!(
            report.tangles,
            vec![vec!["src/net/wire.rs", "src/store.rs"]]
        );
    }

    /// A parent that only re-exports a child's type is a facade, not a dependency; a parent
    /// whose code uses the child's type while the child uses the parent's trait is a cycle.
    #[test]
    fn a_reexport_counts_only_when_its_file_uses_the_name() {
        let lib = ("src/lib.rs", "pub mod vfs;\n");
        let sim = (
            "src/vfs/sim.rs",
            "use super::Vfs;\npub struct Sim;\nimpl Vfs for Sim {}\n",
        );
        let facade = (
            "src/vfs/mod.rs",
            "mod sim;\npub use sim::Sim;\npub trait Vfs {}\n",
        );
        assert!(run(&[lib, sim, facade], &[]).passed());
        let user = (
            "src/vfs/mod.rs",
            "mod sim;\npub use sim::Sim;\npub trait Vfs {}\npub fn open() -> Sim { Sim }\n",
        );
        assert_eq!(run(&[lib, sim, user], &[]).cycles.len(), 1);
    }

    /// `fn` on line 1, `lines - 2` body lines, the closing brace on line `lines`. The body holds
    /// braces in strings, chars, raw strings and comments, which must not end the function early.
    fn function_of(lines: usize) -> String {
        let mut source = String::from("impl Store {\n    fn long(&self) -> u8 {\n");
        let tricky = [
            "        let _ = \"}\";",
            "        let _ = '}';",
            "        let _ = r#\"}\"#;",
            "        // }",
            "        /* } */",
            "        let _: &'static str = \"\\\"}\";",
        ];
        for line in 0..lines - 2 {
            source.push_str(tricky.get(line).copied().unwrap_or("        let _ = 0;"));
            source.push('\n');
        }
        source.push_str("    }\n}\n");
        source
    }

    #[test]
    fn a_function_over_100_lines_is_reported_with_its_type() {
        let source = function_of(101);
        let report = run(&[("src/lib.rs", &source)], &[]);
        assert_eq!(
            report.long_functions,
            vec![LongFunction {
                path: "src/lib.rs".to_string(),
                name: "Store::long".to_string(),
                line: 2,
                lines: 101,
            }]
        );
        let source = function_of(100);
        assert!(run(&[("src/lib.rs", &source)], &[]).passed());
    }

    #[test]
    fn an_allowed_function_is_not_reported_and_a_stale_allowance_is() {
        let allowed = [Allowed {
            path: "src/lib.rs",
            function: Some("Store::long"),
            why: "test",
        }];
        let source = function_of(101);
        let report = run(&[("src/lib.rs", &source)], &allowed);
        assert!(report.passed(), "{report:?}");
        assert_eq!(report.exceptions, vec!["src/lib.rs fn Store::long: test"]);
        let source = function_of(60);
        let report = run(&[("src/lib.rs", &source)], &allowed);
        assert_eq!(report.stale_allowed, vec!["src/lib.rs fn Store::long"]);
    }

    #[test]
    fn a_file_over_800_lines_is_reported() {
        let long = "// a line\n".repeat(801);
        let report = run(&[("src/lib.rs", "mod big;\n"), ("src/big.rs", &long)], &[]);
        assert_eq!(report.long_files, vec![("src/big.rs".to_string(), 801)]);
    }

    #[test]
    fn the_lexer_tells_chars_from_lifetimes_and_skips_comments() {
        let tokens = lex("fn f<'a>(x: &'a u8) -> char { /* { /* } */ */ '\\'' }");
        let braces: Vec<_> = tokens
            .iter()
            .filter(|t| t.is("{") || t.is("}"))
            .map(|t| t.text.as_str())
            .collect();
        assert_eq!(braces, ["{", "}"]);
        assert!(tokens.iter().any(|t| t.is("->")));
    }
}
