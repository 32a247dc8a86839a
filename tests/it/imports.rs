//! No two files of `src/` may import each other, directly or around a loop:
//! a cycle means neither file can be read, changed or moved on its own. The
//! check parses every module with `syn`, resolves each `use` and each
//! `crate::`/`super::`/`self::` path to the file that defines the item
//! (following re-exports, so importing through `lib.rs` or a `mod.rs` is
//! not a dependency on them; a re-export itself is an import of the file it
//! names), and looks for strongly connected components. Declaring a child
//! (`mod x;`) is not an import.
//! Test-only code (`#[cfg(test)]`) is left out: it may import anything.
//! Paths inside macro calls are seen only when the macro's arguments parse
//! as expressions.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    fmt::Write,
    fs,
    path::{Path, PathBuf},
};

use syn::{
    Expr, Item, ItemConst, ItemEnum, ItemFn, ItemImpl, ItemMod, ItemStatic, ItemStruct, ItemTrait,
    ItemType, ItemUse, Macro, Token, UseTree, Visibility,
    punctuated::Punctuated,
    visit::{self, Visit},
};

/// File → file it imports → the lines that import it: number and path.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<(usize, String)>>>;

/// No file of `src/` imports, through any chain, a file that imports it:
/// a cycle is listed with the `use` lines that make each of its edges.
#[test]
fn src_has_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    let knots = knots(&graph);
    assert!(knots.is_empty(), "{}", report(&graph, &knots));
}

/// The check can fail: a made-up crate whose `a.rs` imports `b.rs` through a
/// re-export in `lib.rs` and whose `b.rs` names `super::a`, beside test-only
/// imports (an inline `mod tests`, a `#[cfg(test)] use`, a file declared
/// `#[cfg(test)] mod t;`) that would close two more loops if they counted.
#[test]
fn finds_a_cycle_through_a_re_export_and_ignores_test_code() {
    let src = Path::new(env!("CARGO_TARGET_TMPDIR")).join("imports/src");
    let _ = fs::remove_dir_all(&src);
    fs::create_dir_all(&src).unwrap();
    let made_up = "
@ lib.rs
mod a;
mod b;
mod c;
mod d;
#[cfg(test)]
mod t;
pub use b::B;
@ a.rs
use crate::B;
pub struct A(B);
@ b.rs
pub struct B;
pub fn a() -> super::a::A {
    super::a::A(B)
}
@ c.rs
pub struct C;
#[cfg(test)]
mod tests {
    use crate::d::D;
}
@ d.rs
use crate::c::C;
#[cfg(test)]
use crate::t::T;
pub struct D(C);
@ t.rs
use crate::d::D;
pub struct T;
";
    for file in made_up.split("@ ").skip(1) {
        let (name, text) = file.split_once('\n').unwrap();
        fs::write(src.join(name), text).unwrap();
    }
    let graph = graph(&src);
    let knots = knots(&graph);
    assert_eq!(knots, [["a.rs", "b.rs"]]);
    let report = report(&graph, &knots);
    assert!(report.contains("a.rs → b.rs → a.rs"), "{report}");
    assert!(report.contains("src/a.rs:1: use crate::B"), "{report}");
    assert!(report.contains("src/b.rs:2: super::a::A"), "{report}");
}

/// The import graph of the crate whose sources are in `src`.
fn graph(src: &Path) -> Graph {
    let krate = Crate::read(src);
    let mut graph = Graph::new();
    for (module, m) in &krate.modules {
        let mut add = |to: &str, named: &Named| {
            if to != m.file {
                let lines = graph.entry(m.file.clone()).or_default();
                let lines = lines.entry(to.to_owned()).or_default();
                lines.insert((named.line, named.text.clone()));
            }
        };
        let target = |path: &[String]| {
            krate
                .absolute(module, path, 0)
                .and_then(|p| krate.resolve(&p, 0))
        };
        // After `use crate::store;`, `store::X` depends on the file that
        // defines `X`; the module's own file only if no path goes through it.
        let mut aliased = BTreeSet::new();
        for named in &m.paths {
            let first = &named.path[0];
            let alias = m.uses.iter().any(|(bound, used)| {
                bound == first && target(&used.path).is_some_and(|(_, module)| module)
            });
            if alias {
                aliased.insert(first);
            } else if !["crate", "self", "super"].contains(&first.as_str())
                && !m.children.contains(first)
            {
                continue; // another crate, or a name of this file
            }
            if let Some((to, _)) = target(&named.path) {
                add(to, named);
            }
        }
        for (bound, used) in &m.uses {
            match target(&used.path) {
                Some((_, true)) if aliased.contains(bound) => {}
                Some((to, _)) => add(to, used),
                None => {} // another crate
            }
        }
    }
    graph
}

/// A path a module names: where, and as written.
struct Named {
    path: Vec<String>,
    line: usize,
    text: String,
}

#[derive(Default)]
struct Module {
    /// Relative to `src/`; an inline module shares its parent's.
    file: String,
    children: BTreeSet<String>,
    /// The name each `use` binds (`*` for a glob), and what it names.
    uses: Vec<(String, Named)>,
    /// Paths of two or more segments in the module's code.
    paths: Vec<Named>,
}

impl Module {
    fn in_file(file: String) -> Self {
        Module {
            file,
            ..Module::default()
        }
    }
}

#[derive(Default)]
struct Crate {
    src: PathBuf,
    /// By module path: `[]` is the crate root, `["a", "b"]` is `a::b`.
    modules: BTreeMap<Vec<String>, Module>,
    /// Test-only modules, as `a/b`: their files are not read.
    test_only: Vec<String>,
}

impl Crate {
    /// Reads `lib.rs` and every module it declares; panics on a file of
    /// `src` it did not reach (`#[path]`, a binary), whose imports it would
    /// miss.
    fn read(src: &Path) -> Self {
        let src = src.to_owned();
        let mut krate = Crate {
            src,
            ..Crate::default()
        };
        krate.read_module(Vec::new());
        let read: BTreeSet<_> = krate.modules.values().map(|m| m.file.as_str()).collect();
        for file in rs_files(&krate.src) {
            let file = file
                .strip_prefix(&krate.src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let test_only = krate.test_only.iter().any(|m| {
                file.strip_prefix(m.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '/']))
            });
            assert!(
                read.contains(file.as_str()) || test_only,
                "src/{file} is not reached through `mod` declarations"
            );
        }
        krate
    }

    fn read_module(&mut self, module: Vec<String>) {
        let file = match module.join("/") {
            root if root.is_empty() => "lib.rs".to_owned(),
            base if self.src.join(format!("{base}.rs")).exists() => format!("{base}.rs"),
            base => format!("{base}/mod.rs"),
        };
        let text =
            fs::read_to_string(self.src.join(&file)).unwrap_or_else(|e| panic!("src/{file}: {e}"));
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("src/{file}: {e}"));
        self.modules.insert(module.clone(), Module::in_file(file));
        Reader {
            krate: self,
            module,
        }
        .visit_file(&ast);
    }

    /// The absolute path `path`, named in `module`, stands for; `None` for
    /// another crate's (`std::…`, `serde::…`).
    fn absolute(&self, module: &[String], path: &[String], depth: usize) -> Option<Vec<String>> {
        let m = &self.modules[module];
        let (base, rest) = match path.first()?.as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (module.to_vec(), &path[1..]),
            "super" => {
                let up = path.iter().take_while(|s| *s == "super").count();
                (
                    module[..module.len().checked_sub(up)?].to_vec(),
                    &path[up..],
                )
            }
            child if m.children.contains(child) => (module.to_vec(), path),
            name if depth < 16 => {
                let (_, used) = m.uses.iter().find(|(bound, _)| bound == name)?;
                (self.absolute(module, &used.path, depth + 1)?, &path[1..])
            }
            _ => return None,
        };
        Some([base, rest.to_vec()].concat())
    }

    /// The file defining what the absolute `path` names, and whether that is
    /// a module: walks down the modules, then follows the `use` that binds
    /// the item's name there, if one does (a re-export).
    fn resolve(&self, path: &[String], depth: usize) -> Option<(&str, bool)> {
        let mut module = Vec::new();
        for (i, segment) in path.iter().enumerate() {
            let m = &self.modules[&module];
            if m.children.contains(segment) {
                module.push(segment.clone());
                continue;
            }
            return match m.uses.iter().find(|(bound, _)| bound == segment) {
                Some((_, used)) if depth < 16 => {
                    let target = self.absolute(&module, &used.path, depth + 1)?;
                    self.resolve(&[target, path[i + 1..].to_vec()].concat(), depth + 1)
                }
                _ => Some((&m.file, false)),
            };
        }
        Some((&self.modules[&module].file, true))
    }
}

/// Collects one file's modules, `use`s and paths into the crate.
struct Reader<'c> {
    krate: &'c mut Crate,
    module: Vec<String>,
}

impl Reader<'_> {
    fn module(&mut self) -> &mut Module {
        self.krate.modules.get_mut(&self.module).unwrap()
    }

    /// Adds the leaves of a `use` tree: `prefix` is the path down to `tree`.
    fn add_uses(&mut self, tree: &UseTree, prefix: &mut Vec<String>) {
        let (ident, rename) = match tree {
            UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.add_uses(&p.tree, prefix);
                prefix.pop();
                return;
            }
            UseTree::Group(g) => {
                g.items.iter().for_each(|t| self.add_uses(t, prefix));
                return;
            }
            UseTree::Glob(g) => {
                let text = format!("use {}::*", prefix.join("::"));
                let line = g.star_token.spans[0].start().line;
                self.module().uses.push((
                    "*".into(),
                    Named {
                        path: prefix.clone(),
                        line,
                        text,
                    },
                ));
                return;
            }
            UseTree::Name(n) => (&n.ident, None),
            UseTree::Rename(r) => (&r.ident, Some(&r.rename)),
        };
        // `a::{self, B}` imports the module `a` itself.
        let path = if ident == "self" {
            prefix.clone()
        } else {
            [&prefix[..], &[ident.to_string()]].concat()
        };
        let Some(last) = path.last() else { return };
        let bound = rename.map_or_else(|| last.clone(), ToString::to_string);
        let text = format!(
            "use {}{}",
            path.join("::"),
            rename.map(|r| format!(" as {r}")).unwrap_or_default()
        );
        let line = ident.span().start().line;
        self.module().uses.push((bound, Named { path, line, text }));
    }
}

impl<'ast> Visit<'ast> for Reader<'_> {
    fn visit_item(&mut self, item: &'ast Item) {
        if !is_test(item) {
            visit::visit_item(self, item);
        } else if let Item::Mod(m) = item {
            let module = [&self.module[..], &[m.ident.to_string()]].concat();
            self.krate.test_only.push(module.join("/"));
        }
    }

    fn visit_item_mod(&mut self, m: &'ast ItemMod) {
        let name = m.ident.to_string();
        self.module().children.insert(name.clone());
        let child = [&self.module[..], &[name]].concat();
        match &m.content {
            None => self.krate.read_module(child),
            Some((_, items)) => {
                let inline = Module::in_file(self.module().file.clone());
                self.krate.modules.insert(child.clone(), inline);
                let parent = std::mem::replace(&mut self.module, child);
                items.iter().for_each(|item| self.visit_item(item));
                self.module = parent;
            }
        }
    }

    fn visit_item_use(&mut self, u: &'ast ItemUse) {
        if u.leading_colon.is_none() {
            self.add_uses(&u.tree, &mut Vec::new());
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none() && p.segments.len() > 1 {
            let path: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
            let line = p.segments[0].ident.span().start().line;
            self.module().paths.push(Named {
                text: path.join("::"),
                path,
                line,
            });
        }
        visit::visit_path(self, p);
    }

    /// `pub(in crate::a)` names a module without using anything from it.
    fn visit_visibility(&mut self, _: &'ast Visibility) {}

    fn visit_macro(&mut self, mac: &'ast Macro) {
        if let Ok(args) = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            args.iter().for_each(|arg| self.visit_expr(arg));
        }
    }
}

/// `#[cfg(test)]` on an item that can hold imports or paths.
fn is_test(item: &Item) -> bool {
    let (Item::Mod(ItemMod { attrs, .. })
    | Item::Use(ItemUse { attrs, .. })
    | Item::Fn(ItemFn { attrs, .. })
    | Item::Impl(ItemImpl { attrs, .. })
    | Item::Const(ItemConst { attrs, .. })
    | Item::Static(ItemStatic { attrs, .. })
    | Item::Struct(ItemStruct { attrs, .. })
    | Item::Enum(ItemEnum { attrs, .. })
    | Item::Trait(ItemTrait { attrs, .. })
    | Item::Type(ItemType { attrs, .. })) = item
    else {
        return false;
    };
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
    })
}

fn rs_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rs_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Groups of files that import each other around a loop: Tarjan's strongly
/// connected components of more than one file, sorted.
fn knots(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        knots: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        /// Returns the lowest index reachable from `file` on the stack.
        fn visit(&mut self, file: &'g str) -> usize {
            let index = self.index.len();
            self.index.insert(file, index);
            self.stack.push(file);
            let mut low = index;
            for next in self.graph.get(file).into_iter().flat_map(BTreeMap::keys) {
                low = match self.index.get(next.as_str()) {
                    None => low.min(self.visit(next)),
                    Some(&i) if self.stack.contains(&next.as_str()) => low.min(i),
                    Some(_) => low,
                };
            }
            if low == index {
                let at = self.stack.iter().rposition(|f| *f == file).unwrap();
                let mut knot: Vec<String> = self.stack.drain(at..).map(str::to_owned).collect();
                if knot.len() > 1 {
                    knot.sort();
                    self.knots.push(knot);
                }
            }
            low
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        stack: Vec::new(),
        knots: Vec::new(),
    };
    for file in graph.keys() {
        if !tarjan.index.contains_key(file.as_str()) {
            tarjan.visit(file);
        }
    }
    tarjan.knots.sort();
    tarjan.knots
}

/// For each edge inside `knot`, the shortest loop through it (each loop
/// once, starting at its first file by name): every edge of the knot is on
/// one of them.
fn loops<'g>(graph: &'g Graph, knot: &[String]) -> BTreeSet<Vec<&'g str>> {
    let inside = |file: &'g str| {
        graph[file]
            .keys()
            .map(String::as_str)
            .filter(|f| knot.iter().any(|k| k == f))
    };
    let mut loops = BTreeSet::new();
    for (from, _) in graph.iter().filter(|(f, _)| knot.contains(f)) {
        for to in inside(from) {
            // Breadth first from `to` back to `from`, noting where each file was reached from.
            let mut came_from = BTreeMap::from([(to, to)]);
            let mut queue = VecDeque::from([to]);
            while let Some(file) = queue.pop_front() {
                for next in inside(file) {
                    if !came_from.contains_key(next) {
                        came_from.insert(next, file);
                        queue.push_back(next);
                    }
                }
            }
            let mut way = vec![from.as_str()];
            while *way.last().unwrap() != to {
                way.push(came_from[way.last().unwrap()]);
            }
            way.reverse(); // to … from
            let start = way.iter().enumerate().min_by_key(|&(_, f)| *f).unwrap().0;
            way.rotate_left(start);
            way.push(way[0]);
            loops.insert(way);
        }
    }
    loops
}

fn report(graph: &Graph, knots: &[Vec<String>]) -> String {
    let mut out = format!(
        "src/ has {} group(s) of files that import each other in a loop; each loop below \
         must lose one of its edges, listed after it with the lines that make them:\n",
        knots.len()
    );
    for knot in knots {
        writeln!(out, "\n{} files: {}", knot.len(), knot.join(", ")).unwrap();
        for cycle in loops(graph, knot) {
            writeln!(out, "  {}", cycle.join(" → ")).unwrap();
        }
        writeln!(out, "  edges:").unwrap();
        for from in knot {
            for (to, lines) in graph[from].iter().filter(|(to, _)| knot.contains(to)) {
                writeln!(out, "  {from} → {to}").unwrap();
                for (line, text) in lines {
                    writeln!(out, "      src/{from}:{line}: {text}").unwrap();
                }
            }
        }
    }
    out
}
