//! The compiled router: a tree keyed by literal segment (a hash table
//! for many literal children), routes ordered by precedence, and a
//! backtracking match that costs about the same with ten routes as with
//! thousands.
//!
//! Long because the tree, its builder (with conflict detection) and its
//! matcher are one data structure; a third of it is tests.

use std::fmt;
use std::sync::Arc;

use super::matching::{Path, RouteParams, has_optional_tail, match_complex, match_parts};
use super::method::{Method, MethodSet};
use super::template::{Constraints, Mode, Param, Part, RouteTemplate, Segment, same_parts};

/// shape (same literals ignoring case, same parameter kinds and constraints,
/// whatever the parameter names) and shares at least one method with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteConflict {
    /// Index (as returned by [`RouterBuilder::add`]) of the existing route.
    pub existing: usize,
}

impl fmt::Display for RouteConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "route conflicts with route #{}: same template and overlapping HTTP methods",
            self.existing
        )
    }
}

impl std::error::Error for RouteConflict {}

/// A hash of `s` that ignores ASCII case, eight bytes at a time: equal
/// under `eq_ignore_ascii_case` implies equal hashes.
fn ci_hash(s: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    /// Sets bit 0x20 of every byte in `A..=Z`.
    fn lower(x: u64) -> u64 {
        let low = x & LOW7;
        let ge_a = low + ONES * u64::from(0x80 - b'A');
        let gt_z = low + ONES * u64::from(0x80 - b'Z' - 1);
        let upper = ge_a & !gt_z & !x & HIGH;
        x | (upper >> 2)
    }
    fn mix(h: u64, v: u64) -> u64 {
        let m = u128::from(h ^ v) * u128::from(K);
        (m as u64) ^ ((m >> 64) as u64)
    }
    let mut h = (s.len() as u64).wrapping_mul(K);
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        h = mix(h, lower(u64::from_le_bytes(word)));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = mix(h, lower(u64::from_le_bytes(word)));
    }
    h
}

/// A literal child of a node: the literal's text is `start..end` of the
/// router's literal arena (as written; compared ignoring ASCII case).
#[derive(Debug)]
struct LitKey {
    start: usize,
    end: usize,
    hash: u64,
    child: usize,
}

/// Literal children of a node: a short list searched linearly, or an
/// open-addressing table keyed by the case-insensitive hash once there are
/// more than a few; lookups never allocate.
#[derive(Debug, Default)]
struct Literals {
    keys: Vec<LitKey>,
    /// Slots hold index + 1 into `keys`; 0 is empty. Length is a power of
    /// two; empty while the keys are few enough to search linearly.
    table: Vec<usize>,
}

impl Literals {
    const LINEAR: usize = 4;

    fn get(&self, arena: &[u8], seg: &[u8]) -> Option<usize> {
        if self.keys.len() <= Self::LINEAR {
            return self
                .keys
                .iter()
                .find(|k| arena[k.start..k.end].eq_ignore_ascii_case(seg))
                .map(|k| k.child);
        }
        let h = ci_hash(seg);
        let mask = self.table.len() - 1;
        let mut i = (h as usize) & mask;
        loop {
            let slot = self.table[i];
            if slot == 0 {
                return None;
            }
            let k = &self.keys[slot - 1];
            if k.hash == h && arena[k.start..k.end].eq_ignore_ascii_case(seg) {
                return Some(k.child);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds the literal at `start..end` of `arena`.
    fn insert(&mut self, arena: &[u8], start: usize, end: usize, child: usize) {
        self.keys.push(LitKey {
            start,
            end,
            hash: ci_hash(&arena[start..end]),
            child,
        });
        if self.keys.len() <= Self::LINEAR {
            return;
        }
        if self.table.len() < self.keys.len() * 2 {
            let size = (self.keys.len() * 2).next_power_of_two().max(8);
            self.table = vec![0; size];
            for idx in 0..self.keys.len() {
                self.place(idx);
            }
        } else {
            self.place(self.keys.len() - 1);
        }
    }

    fn place(&mut self, idx: usize) {
        let mask = self.table.len() - 1;
        let mut i = (self.keys[idx].hash as usize) & mask;
        while self.table[i] != 0 {
            i = (i + 1) & mask;
        }
        self.table[i] = idx + 1;
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Debug)]
enum Matcher {
    Param {
        mode: Mode,
        constraints: Constraints,
    },
    Complex(Vec<Part>),
}

impl Matcher {
    /// Whether the non-literal segment `seg` has this matcher's shape (same
    /// literals ignoring case, same parameter kinds and constraints, names
    /// ignored), so that it shares its edge.
    fn same_shape(&self, seg: &Segment) -> bool {
        match (self, seg) {
            (Matcher::Param { mode, constraints }, Segment::Param(p)) => {
                *mode == p.mode && constraints.same(&p.constraints)
            }
            (Matcher::Complex(parts), Segment::Complex(other)) => same_parts(parts, other),
            _ => false,
        }
    }
}

#[derive(Debug)]
struct Edge {
    rank: u8,
    matcher: Matcher,
    child: usize,
}

#[derive(Debug, Default)]
struct Node {
    /// The first route whose template ends here.
    terminal: Option<usize>,
    /// Further routes ending here, in registration order.
    more_terminals: Vec<usize>,
    literals: Literals,
    /// Non-literal children, sorted by rank (stable: creation order).
    edges: Vec<Edge>,
}

impl Node {
    /// The first route ending here, in registration order, that satisfies
    /// `pred`.
    fn find_terminal(&self, pred: impl Fn(usize) -> bool) -> Option<usize> {
        match self.terminal {
            Some(r) if pred(r) => Some(r),
            Some(_) => self.more_terminals.iter().copied().find(|&r| pred(r)),
            None => None,
        }
    }

    /// Routes whose template ends here, in registration order.
    fn terminals(&self) -> impl Iterator<Item = usize> + '_ {
        self.terminal
            .into_iter()
            .chain(self.more_terminals.iter().copied())
    }
}

struct Entry<T> {
    template: RouteTemplate,
    methods: MethodSet,
    value: T,
}

fn debug_entries<T>(f: &mut fmt::Formatter<'_>, name: &str, entries: &[Entry<T>]) -> fmt::Result {
    struct Routes<'a, T>(&'a [Entry<T>]);
    impl<T> fmt::Debug for Routes<'_, T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut m = f.debug_map();
            for (i, e) in self.0.iter().enumerate() {
                m.entry(&i, &format_args!("{} [{}]", e.template.as_str(), e.methods));
            }
            m.finish()
        }
    }
    f.debug_struct(name)
        .field("routes", &Routes(entries))
        .finish()
}

/// Collects routes and compiles them into a [`Router`].
pub struct RouterBuilder<T> {
    nodes: Vec<Node>,
    routes: Vec<Entry<T>>,
    /// The text of every literal child, back to back.
    arena: Vec<u8>,
}

impl<T> Default for RouterBuilder<T> {
    fn default() -> Self {
        RouterBuilder {
            nodes: vec![Node::default()],
            routes: Vec::new(),
            arena: Vec::new(),
        }
    }
}

impl<T> fmt::Debug for RouterBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_entries(f, "RouterBuilder", &self.routes)
    }
}

impl<T> RouterBuilder<T> {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of routes added so far.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether no route has been added.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Adds a route for `methods` (the empty set means every method) and
    /// returns its index, which counts successfully added routes from 0.
    ///
    /// # Errors
    ///
    /// [`RouteConflict`] when an existing route has the same template shape
    /// (literals compared ignoring case, parameters by kind and constraints,
    /// names ignored) and a method in common; nothing is added then.
    pub fn add(
        &mut self,
        template: RouteTemplate,
        methods: MethodSet,
        value: T,
    ) -> Result<usize, RouteConflict> {
        let methods = if methods.is_empty() {
            MethodSet::ALL
        } else {
            methods
        };
        let mut node = 0;
        let text = template.as_str();
        for seg in template.segments() {
            node = match seg {
                Segment::Literal(l) => self.literal_child(node, l.bytes(text)),
                _ => self.edge_child(node, seg),
            };
        }
        if let Some(existing) =
            self.nodes[node].find_terminal(|r| self.routes[r].methods.intersects(methods))
        {
            return Err(RouteConflict { existing });
        }
        let index = self.routes.len();
        let target = &mut self.nodes[node];
        if target.terminal.is_none() {
            target.terminal = Some(index);
        } else {
            target.more_terminals.push(index);
        }
        self.routes.push(Entry {
            template,
            methods,
            value,
        });
        Ok(index)
    }

    fn new_node(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    fn literal_child(&mut self, node: usize, literal: &[u8]) -> usize {
        if let Some(child) = self.nodes[node].literals.get(&self.arena, literal) {
            return child;
        }
        let child = self.new_node();
        let start = self.arena.len();
        self.arena.extend_from_slice(literal);
        self.nodes[node]
            .literals
            .insert(&self.arena, start, self.arena.len(), child);
        child
    }

    fn edge_child(&mut self, node: usize, seg: &Segment) -> usize {
        if let Some(e) = self.nodes[node]
            .edges
            .iter()
            .find(|e| e.matcher.same_shape(seg))
        {
            return e.child;
        }
        let child = self.new_node();
        let rank = seg.rank();
        let matcher = match seg {
            Segment::Param(p) => Matcher::Param {
                mode: p.mode,
                constraints: p.constraints.clone(),
            },
            Segment::Complex(parts) => Matcher::Complex(parts.clone()),
            Segment::Literal(_) => unreachable!("literals are not edges"),
        };
        let edges = &mut self.nodes[node].edges;
        let at = edges.partition_point(|e| e.rank <= rank);
        edges.insert(
            at,
            Edge {
                rank,
                matcher,
                child,
            },
        );
        child
    }

    /// Compiles the routes into a [`Router`].
    pub fn build(self) -> Router<T> {
        Router {
            nodes: self.nodes,
            routes: self.routes,
            arena: self.arena,
        }
    }
}

/// The result of [`Router::find`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteMatch<'r, T> {
    /// The most specific route matching both path and method.
    Matched {
        /// The value the route was registered with.
        value: &'r T,
        /// The route's parameter values.
        params: RouteParams,
    },
    /// Some route matches the path, but none accepts the method.
    MethodNotAllowed {
        /// Union of the methods of the routes matching the path.
        allowed: MethodSet,
    },
    /// No route matches the path.
    NotFound,
}

/// A compiled set of routes; see the [module documentation](crate::route) for the
/// matching rules.
pub struct Router<T> {
    nodes: Vec<Node>,
    routes: Vec<Entry<T>>,
    /// The text of every literal child, back to back.
    arena: Vec<u8>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        RouterBuilder::new().build()
    }
}

impl<T> fmt::Debug for Router<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_entries(f, "Router", &self.routes)
    }
}

/// Segments kept on the stack before `find` falls back to a heap vector.
const STACK_SEGMENTS: usize = 16;

impl<T> Router<T> {
    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the router has no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The value of the route with index `index`, as returned by
    /// [`RouterBuilder::add`].
    pub fn get(&self, index: usize) -> Option<&T> {
        self.routes.get(index).map(|e| &e.value)
    }

    /// Finds the most specific route matching `method` and `path`.
    ///
    /// `path` is the request path without query string, with or without a
    /// leading `/`; one trailing `/` is ignored. Segments are percent-decoded
    /// before they are compared or captured.
    pub fn find(&self, method: Method, path: &str) -> RouteMatch<'_, T> {
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let ranges = || {
            let mut start = 0;
            trimmed.split('/').map(move |s| {
                let r = (start, start + s.len());
                start += s.len() + 1;
                r
            })
        };
        let mut stack = [(0usize, 0usize); STACK_SEGMENTS];
        let heap: Vec<(usize, usize)>;
        let segs: &[(usize, usize)] = if trimmed.is_empty() {
            &[]
        } else {
            let mut count = 0;
            for r in ranges() {
                if count == STACK_SEGMENTS {
                    count += 1;
                    break;
                }
                stack[count] = r;
                count += 1;
            }
            if count <= STACK_SEGMENTS {
                &stack[..count]
            } else {
                heap = ranges().collect();
                &heap
            }
        };
        let path = Path {
            text: trimmed,
            segs,
            percent: trimmed.as_bytes().contains(&b'%'),
        };
        if let Some(r) = self.search(0, 0, &path, method) {
            let entry = &self.routes[r];
            return RouteMatch::Matched {
                value: &entry.value,
                params: capture(&entry.template, &path),
            };
        }
        let mut allowed = MethodSet::EMPTY;
        self.collect(0, 0, &path, &mut allowed);
        if allowed.is_empty() {
            RouteMatch::NotFound
        } else {
            RouteMatch::MethodNotAllowed { allowed }
        }
    }

    /// Whether `a` is more specific than `b` (then earlier registration).
    fn better(&self, a: usize, b: usize) -> bool {
        let (ka, kb) = (self.routes[a].template.key(), self.routes[b].template.key());
        ka.cmp(kb).then(a.cmp(&b)).is_lt()
    }

    /// The most specific route below `node` matching the path from segment
    /// `pos` and accepting `method`.
    fn search(&self, node: usize, pos: usize, path: &Path<'_>, method: Method) -> Option<usize> {
        let node = &self.nodes[node];
        if pos == path.len() {
            if let Some(r) = node.find_terminal(|r| self.routes[r].methods.contains(method)) {
                return Some(r);
            }
        } else if !node.literals.is_empty()
            && let Some(child) = node.literals.get(&self.arena, path.seg(pos).as_bytes())
            && let Some(r) = self.search(child, pos + 1, path, method)
        {
            return Some(r);
        }
        let mut i = 0;
        while i < node.edges.len() {
            let rank = node.edges[i].rank;
            let mut best: Option<usize> = None;
            while i < node.edges.len() && node.edges[i].rank == rank {
                let edge = &node.edges[i];
                if let Some(next) = step(&edge.matcher, pos, path)
                    && let Some(r) = self.search(edge.child, next, path, method)
                {
                    best = Some(match best {
                        Some(b) if !self.better(r, b) => b,
                        _ => r,
                    });
                }
                i += 1;
            }
            if best.is_some() {
                return best;
            }
        }
        None
    }

    /// Unions into `allowed` the methods of every route below `node` matching
    /// the path from segment `pos`.
    fn collect(&self, node: usize, pos: usize, path: &Path<'_>, allowed: &mut MethodSet) {
        let node = &self.nodes[node];
        if pos == path.len() {
            for r in node.terminals() {
                *allowed = allowed.union(self.routes[r].methods);
            }
        } else if let Some(child) = node.literals.get(&self.arena, path.seg(pos).as_bytes()) {
            self.collect(child, pos + 1, path, allowed);
        }
        for edge in &node.edges {
            if let Some(next) = step(&edge.matcher, pos, path) {
                self.collect(edge.child, next, path, allowed);
            }
        }
    }
}

/// Tries one non-literal edge at segment `pos`; returns the position after it.
fn step(matcher: &Matcher, pos: usize, path: &Path<'_>) -> Option<usize> {
    let n = path.len();
    let accepts = |cs: &Constraints, v: &str| cs.as_slice().iter().all(|c| c.accepts(v));
    match matcher {
        Matcher::Param {
            mode: Mode::CatchAll,
            constraints,
        } => {
            if pos < n && !constraints.is_empty() {
                let rest = path.rest(pos);
                if !rest.is_empty() && !accepts(constraints, &rest) {
                    return None;
                }
            }
            Some(n)
        }
        Matcher::Param { mode, constraints } => {
            if pos == n {
                return (*mode == Mode::Optional).then_some(n);
            }
            let v = path.seg(pos);
            (!v.is_empty() && accepts(constraints, &v)).then_some(pos + 1)
        }
        Matcher::Complex(parts) => {
            if pos == n {
                return None;
            }
            let v = path.seg(pos);
            (!v.is_empty() && match_complex(parts, &v, &mut |p, v| p.accepts(v))).then_some(pos + 1)
        }
    }
}

/// Extracts the parameter values of `template`, known to match `path`.
fn capture(template: &RouteTemplate, path: &Path<'_>) -> RouteParams {
    let mut out = RouteParams::default();
    let n = path.len();
    let mut pos = 0;
    for seg in template.segments() {
        match seg {
            Segment::Literal(_) => pos += 1,
            Segment::Param(p) => {
                let value = match p.mode {
                    Mode::CatchAll if pos < n => {
                        let rest = path.rest(pos);
                        pos = n;
                        Some(rest.into_owned()).filter(|r| !r.is_empty())
                    }
                    Mode::Required | Mode::Optional if pos < n => {
                        pos += 1;
                        Some(path.seg(pos - 1).into_owned())
                    }
                    _ => None,
                };
                if let Some(v) = value.or_else(|| p.default.clone()) {
                    out.push(&p.name, v);
                }
            }
            Segment::Complex(parts) => {
                if pos < n {
                    let v = path.seg(pos);
                    let mut found: Vec<(Arc<str>, String)> = Vec::new();
                    let mut record = |p: &Param, v: &str| {
                        found.push((Arc::clone(&p.name), v.to_owned()));
                        true
                    };
                    if !match_parts(parts, &v, &mut record) {
                        found.clear();
                        if has_optional_tail(parts) {
                            let mut record = |p: &Param, v: &str| {
                                found.push((Arc::clone(&p.name), v.to_owned()));
                                true
                            };
                            match_parts(&parts[..parts.len() - 2], &v, &mut record);
                        }
                    }
                    // Captures arrive right to left.
                    for (name, value) in found.into_iter().rev() {
                        out.entries.push((name, value));
                    }
                }
                pos += 1;
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::route::testing::*;

    // ----- matching -----

    #[test]
    fn literals_case_insensitive_and_params_keep_case() {
        let r = router(&[("api/Products/{name}", &[])]);
        assert_eq!(
            hit(&r, Method::Get, "/API/products/MixedCase"),
            Some((0, vec!["name=MixedCase".into()]))
        );
        check_picks(
            &r,
            &[
                ("api/products/x", Some(0)),
                ("/api/products", None),
                ("/api/products/x/y", None),
            ],
        );
    }

    #[test]
    fn trailing_slash_and_empty_segments() {
        let r = router(&[("a/{b}", &[]), ("c/{*rest}", &[])]);
        check_picks(&r, &[("/a/x/", Some(0)), ("/a//", None), ("/a/", None)]);
        assert_eq!(
            hit(&r, Method::Get, "/c/x//y/"),
            Some((1, vec!["rest=x//y".into()]))
        );
        let root = router(&[("", &[])]);
        check_picks(&root, &[("/", Some(0)), ("", Some(0)), ("/x", None)]);
    }

    #[test]
    fn percent_decoding() {
        let r = router(&[("files/{name}", &[]), ("hello world", &[])]);
        assert_eq!(
            hit(&r, Method::Get, "/files/a%20b%2Fc"),
            Some((0, vec!["name=a b/c".into()]))
        );
        assert_eq!(idx(&r, "/hello%20WORLD"), Some(1));
        assert_eq!(
            hit(&r, Method::Get, "/files/100%"),
            Some((0, vec!["name=100%".into()]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/files/%zz%4"),
            Some((0, vec!["name=%zz%4".into()]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/files/%C3%A9"),
            Some((0, vec!["name=é".into()]))
        );
    }

    #[test]
    fn optional_defaults_and_catch_all() {
        let r = router(&[
            ("opt/{id?}", &[]),
            ("def/{id=5}", &[]),
            ("mvc/{controller=Home}/{action=Index}/{id?}", &[]),
            ("all/{*path}", &[]),
            ("alldef/{*path=index.html}", &[]),
        ]);
        assert_eq!(hit(&r, Method::Get, "/opt"), Some((0, vec![])));
        assert_eq!(
            hit(&r, Method::Get, "/opt/7"),
            Some((0, vec!["id=7".into()]))
        );
        assert_eq!(hit(&r, Method::Get, "/def"), Some((1, vec!["id=5".into()])));
        assert_eq!(
            hit(&r, Method::Get, "/def/9"),
            Some((1, vec!["id=9".into()]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/mvc"),
            Some((2, vec!["controller=Home".into(), "action=Index".into()]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/mvc/Shop/List/3"),
            Some((
                2,
                vec![
                    "controller=Shop".into(),
                    "action=List".into(),
                    "id=3".into()
                ]
            ))
        );
        assert_eq!(hit(&r, Method::Get, "/all"), Some((3, vec![])));
        assert_eq!(
            hit(&r, Method::Get, "/all/a/b%20c/d"),
            Some((3, vec!["path=a/b c/d".into()]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/alldef"),
            Some((4, vec!["path=index.html".into()]))
        );
        // A default in the middle does not make the parameter optional.
        let mid = router(&[("{a=1}/b", &[])]);
        assert_eq!(idx(&mid, "/b"), None);
        assert_eq!(
            hit(&mid, Method::Get, "/x/b"),
            Some((0, vec!["a=x".into()]))
        );
    }

    #[test]
    fn optional_constrained_parameter() {
        let r = router(&[("p/{id:int?}", &[])]);
        check_picks(&r, &[("/p", Some(0)), ("/p/3", Some(0)), ("/p/x", None)]);
    }

    #[test]
    fn complex_segments() {
        let r = router(&[
            ("files/{name}.{ext?}", &[]),
            ("f/file{id:int}.txt", &[]),
            ("s/{a}abc{b}", &[]),
            ("d/{a}-{b}-{c}", &[]),
        ]);
        assert_eq!(
            hit(&r, Method::Get, "/files/app.config.xml"),
            Some((0, vec!["name=app.config".into(), "ext=xml".into()]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/files/readme"),
            Some((0, vec!["name=readme".into()]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/f/FILE12.TXT"),
            Some((1, vec!["id=12".into()]))
        );
        assert_eq!(idx(&r, "/f/fileX.txt"), None);
        assert_eq!(idx(&r, "/f/file.txt"), None);
        assert_eq!(
            hit(&r, Method::Get, "/s/abcabcabcoracle"),
            Some((2, vec!["a=abcabc".into(), "b=oracle".into()]))
        );
        assert_eq!(idx(&r, "/s/abcoracle"), None);
        assert_eq!(
            hit(&r, Method::Get, "/d/1-2-3-4"),
            Some((3, vec!["a=1-2".into(), "b=3".into(), "c=4".into()]))
        );
        assert_eq!(idx(&r, "/d/1--3"), None);
    }

    #[test]
    fn specificity_order() {
        let r = router(&[
            ("x/{*rest}", &[]),
            ("x/{a?}", &[]),
            ("x/{a}", &[]),
            ("x/{a:int}", &[]),
            ("x/{a}.json", &[]),
            ("x/lit", &[]),
        ]);
        check_picks(
            &r,
            &[
                ("/x/lit", Some(5)),
                ("/x/7.json", Some(4)),
                ("/x/7", Some(3)),
                ("/x/seven", Some(2)),
                ("/x", Some(1)),
                ("/x/a/b", Some(0)),
            ],
        );
    }

    #[test]
    fn specificity_is_left_to_right_with_backtracking() {
        let r = router(&[
            ("{a}/b/c", &[]),
            ("a/{b}/d", &[]),
            ("{x:int}/{y}", &[]),
            ("{x:min(1)}/lit", &[]),
        ]);
        check_picks(
            &r,
            &[
                // The literal branch dead-ends, fall back to the parameter.
                ("/a/b/c", Some(0)),
                ("/a/b/d", Some(1)),
                // Same rank in the first segment: the second segment decides.
                ("/5/lit", Some(3)),
                ("/5/other", Some(2)),
            ],
        );
        // Ties go to the earlier route.
        let tie = router(&[("{a:int}", &[]), ("{a:min(0)}", &[])]);
        assert_eq!(idx(&tie, "/5"), Some(0));
        // A template that ends earlier beats a longer one.
        let short = router(&[("a/{*rest}", &[]), ("a", &[])]);
        assert_eq!(idx(&short, "/a"), Some(1));
    }

    #[test]
    fn method_not_allowed_and_not_found() {
        let r = router(&[
            ("items/{id:int}", &[Method::Get]),
            ("items/{name}", &[Method::Delete, Method::Put]),
            ("items/special", &[Method::Post]),
        ]);
        assert_eq!(idx(&r, "/items/5"), Some(0));
        // A less specific route takes the method the best one lacks.
        assert_eq!(hit(&r, Method::Put, "/items/5").map(|h| h.0), Some(1));
        assert_eq!(
            hit(&r, Method::Post, "/items/special").map(|h| h.0),
            Some(2)
        );
        assert_eq!(
            hit(&r, Method::Delete, "/items/special").map(|h| h.0),
            Some(1)
        );
        match r.find(Method::Post, "/items/5") {
            RouteMatch::MethodNotAllowed { allowed } => {
                assert_eq!(allowed.to_string(), "GET, PUT, DELETE");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.find(Method::Get, "/nothing"), RouteMatch::NotFound);
        assert_eq!(r.find(Method::Get, "/items"), RouteMatch::NotFound);
    }

    #[test]
    fn empty_method_set_means_all() {
        let r = router(&[("a", &[])]);
        for m in Method::ALL {
            assert_eq!(hit(&r, m, "/a").map(|h| h.0), Some(0));
        }
    }

    #[test]
    fn conflicts() {
        let get = MethodSet::from(Method::Get);
        let mut b = RouterBuilder::new();
        assert_eq!(b.add(t("items/{id}"), get, 0), Ok(0));
        assert_eq!(
            b.add(t("Items/{key}"), get.with(Method::Post), 1),
            Err(RouteConflict { existing: 0 })
        );
        assert_eq!(b.add(t("Items/{key}"), Method::Post.into(), 1), Ok(1));
        assert_eq!(
            b.add(t("items/{key}"), MethodSet::EMPTY, 2),
            Err(RouteConflict { existing: 0 })
        );
        // Different constraints or kinds do not conflict.
        assert_eq!(b.add(t("items/{id:int}"), get, 2), Ok(2));
        assert_eq!(b.add(t("items/{id?}"), get, 3), Ok(3));
        assert_eq!(
            b.add(t("items/{x=4}"), get, 4),
            Err(RouteConflict { existing: 3 })
        );
        assert_eq!(b.add(t("items/{*x}"), get, 4), Ok(4));
        assert_eq!(
            b.add(t("items/{**y}"), get, 5),
            Err(RouteConflict { existing: 4 })
        );
        // Constraint order does not matter.
        assert_eq!(b.add(t("c/{x:int:min(1)}"), get, 5), Ok(5));
        assert_eq!(
            b.add(t("c/{y:MIN(1):int}"), get, 6),
            Err(RouteConflict { existing: 5 })
        );
        assert_eq!(b.len(), 6);
        assert!(
            RouteConflict { existing: 5 }
                .to_string()
                .contains("route #5")
        );
        let r = b.build();
        assert_eq!(r.len(), 6);
        assert_eq!(r.get(5), Some(&5));
        assert!(format!("{r:?}").contains("items/{id} [GET]"));
    }

    #[test]
    fn params_lookup_is_case_insensitive() {
        let r = router(&[("{Café}/{ID}", &[])]);
        let RouteMatch::Matched { params, .. } = r.find(Method::Get, "/a/b") else {
            panic!("no match")
        };
        assert_eq!(params.get("id"), Some("b"));
        assert_eq!(params.get("CAFÉ"), Some("a"));
        assert_eq!(params.get("nope"), None);
        assert_eq!(params.len(), 2);
        assert!(!params.is_empty());
        assert!(RouteParams::default().is_empty());
    }

    #[test]
    fn empty_router_and_deep_paths() {
        let r: Router<()> = Router::default();
        assert!(r.is_empty());
        assert_eq!(r.find(Method::Get, "/"), RouteMatch::NotFound);
        let deep = "/a".repeat(50);
        let tpl = deep.trim_start_matches('/').to_owned() + "/{x}";
        let r = router(&[(&tpl, &[])]);
        assert_eq!(
            hit(&r, Method::Get, &format!("{deep}/end")),
            Some((0, vec!["x=end".into()]))
        );
    }

    #[test]
    fn segment_counts_around_the_stack_limit() {
        for n in [STACK_SEGMENTS - 1, STACK_SEGMENTS, STACK_SEGMENTS + 1] {
            let tpl = vec!["s"; n - 1].join("/") + "/{last}";
            let r = router(&[(&tpl, &[]), ("{*all}", &[])]);
            let path = "/S".repeat(n - 1) + "/v";
            assert_eq!(
                hit(&r, Method::Get, &path),
                Some((0, vec!["last=v".into()])),
                "{n}"
            );
            let longer = format!("{path}/w");
            assert_eq!(
                hit(&r, Method::Get, &longer),
                Some((1, vec![format!("all={}", &longer[1..])])),
                "{n}"
            );
        }
    }

    #[test]
    fn router_is_send_and_sync() {
        fn assert_send_sync<X: Send + Sync>() {}
        assert_send_sync::<Router<String>>();
        assert_send_sync::<RouterBuilder<String>>();
        assert_send_sync::<RouteTemplate>();
        assert_send_sync::<RouteParams>();
    }

    #[test]
    fn ci_hash_ignores_ascii_case_only() {
        for b in 0..=255u8 {
            let (a, l) = ([b; 11], [b.to_ascii_lowercase(); 11]);
            assert_eq!(ci_hash(&a), ci_hash(&l), "{b}");
            assert_eq!(ci_hash(&a[..3]), ci_hash(&l[..3]), "{b}");
            let other = b | 0x20;
            if other != b && !b.is_ascii_uppercase() {
                assert_ne!(ci_hash(&[b]), ci_hash(&[other]), "{b}");
            }
        }
        assert_eq!(ci_hash(b"Hello-World_2024"), ci_hash(b"hELLO-wORLD_2024"));
        assert_ne!(ci_hash(b"a"), ci_hash(b"b"));
        assert_ne!(ci_hash(b"a"), ci_hash(b"a\0"));
        assert_ne!(ci_hash(b"@"), ci_hash(b"`"));
        assert_ne!(ci_hash(b"["), ci_hash(b"{"));
    }

    #[test]
    fn many_literal_children_use_the_hash_table() {
        let names: Vec<String> = (0..100).map(|i| format!("svc{i}/x")).collect();
        let routes: Vec<(&str, &[Method])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
        let r = router(&routes);
        for i in 0..100 {
            assert_eq!(idx(&r, &format!("/SVC{i}/X")), Some(i));
        }
        assert_eq!(idx(&r, "/svc100/x"), None);
    }
}
