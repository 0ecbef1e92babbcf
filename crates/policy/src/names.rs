//! A compact set of names with a rule per name: one byte arena and an
//! open-addressing table of offsets into it.
//!
//! A name from a block list costs its wire-format bytes plus two (a length
//! and a flags byte; rule ids other than the list's default take 4 bytes
//! more) and a 4-byte slot at most 75 % full — about 38 bytes for a typical
//! list entry, where a `HashMap<Box<[u8]>, _>` would charge about 100 — and
//! a lookup hashes each suffix of the query name once, without allocating.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::hash::BuildHasher;

/// Rule ids are 1-based; 0 means "no rule".
pub(crate) type RuleId = u32;

/// Where a rule applies relative to the name it is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The name itself only (RPZ QNAME triggers).
    Exact,
    /// Names strictly below it only (`*.example.test`).
    Below,
    /// The name and every name below it (domain lists, hosts files,
    /// `||example.test^`).
    Subtree,
}

/// Entry flags: an exact rule, a below rule (rule 1 unless the `_ID` bit
/// says a u32 follows), and a dead entry (replaced further on).
const EXACT: u8 = 1;
const BELOW: u8 = 2;
const EXACT_ID: u8 = 4;
const BELOW_ID: u8 = 8;
const DEAD: u8 = 16;

/// A name set whose entries carry an "exact" and a "below" rule.
pub(crate) struct NameTable {
    /// Entries: name length (u8), the lower-case wire name, flags (u8),
    /// then the exact and below rule ids (u32 LE) the flags call for.
    arena: Vec<u8>,
    /// 0 for an empty slot, else the entry's arena offset + 1.
    slots: Vec<u32>,
    len: usize,
    hasher: std::hash::RandomState,
}

impl std::fmt::Debug for NameTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameTable").field("len", &self.len).field("bytes", &self.heap_bytes()).finish()
    }
}

impl Default for NameTable {
    fn default() -> Self {
        NameTable { arena: Vec::new(), slots: vec![0; 16], len: 0, hasher: std::hash::RandomState::new() }
    }
}

impl NameTable {
    /// Names stored.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.slots.capacity() * 4
    }

    /// Gives back spare capacity once loading is done.
    pub(crate) fn shrink(&mut self) {
        self.arena.shrink_to_fit();
    }

    // Entry offsets come only from `slots` and `names`, which hold the
    // starts of entries `push` wrote whole, so the reads below are always in
    // range. Were one not, it would read as an empty, dead entry with no
    // rules: nothing matches it and nothing panics.

    fn name_at(&self, off: usize) -> &[u8] {
        let entry = self.arena.get(off..).and_then(<[u8]>::split_first);
        entry.and_then(|(&n, rest)| rest.get(..n as usize)).unwrap_or_default()
    }

    fn flags_at(&self, f: usize) -> u8 {
        self.arena.get(f).copied().unwrap_or(DEAD)
    }

    /// The flags byte's position and the entry's total length.
    fn layout(&self, off: usize) -> (usize, usize) {
        let f = off + 1 + self.name_at(off).len();
        let flags = self.flags_at(f);
        let ids = (flags & EXACT_ID != 0) as usize + (flags & BELOW_ID != 0) as usize;
        (f, f + 1 + 4 * ids - off)
    }

    fn rules_at(&self, off: usize) -> (RuleId, RuleId) {
        let (f, _) = self.layout(off);
        let flags = self.flags_at(f);
        let r = |i: usize| self.arena.get(i..).and_then(<[u8]>::first_chunk).map_or(0, |b| u32::from_le_bytes(*b));
        let mut p = f + 1;
        let mut take = |present: u8, explicit: u8| {
            if flags & explicit != 0 {
                p += 4;
                r(p - 4)
            } else {
                (flags & present != 0) as RuleId
            }
        };
        let exact = take(EXACT, EXACT_ID);
        (exact, take(BELOW, BELOW_ID))
    }

    /// Appends an entry; returns its offset.
    fn push(&mut self, name: &[u8], exact: RuleId, below: RuleId) -> usize {
        let off = self.arena.len();
        let mut flags = 0;
        for (rule, present, explicit) in [(exact, EXACT, EXACT_ID), (below, BELOW, BELOW_ID)] {
            if rule != 0 {
                flags |= present | if rule != 1 { explicit } else { 0 };
            }
        }
        self.arena.push(name.len() as u8);
        self.arena.extend_from_slice(name);
        self.arena.push(flags);
        for rule in [exact, below] {
            if rule > 1 {
                self.arena.extend_from_slice(&rule.to_le_bytes());
            }
        }
        off
    }

    /// The slot holding `name`, or the empty slot where it would go.
    // Cannot fail: `slots.len()` is a power of two and every index is
    // masked with `slots.len() - 1`.
    #[allow(clippy::indexing_slicing)]
    fn probe(&self, name: &[u8]) -> (usize, Option<usize>) {
        let mask = self.slots.len() - 1;
        let mut i = self.hasher.hash_one(name) as usize & mask;
        loop {
            match self.slots[i] {
                0 => return (i, None),
                s => {
                    let off = s as usize - 1;
                    if self.name_at(off) == name {
                        return (i, Some(off));
                    }
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `rule` for `name` (lower-case wire format) with `scope`. A rule
    /// already present for the same name and position is kept (the first
    /// line of a source wins). Returns whether the name was new.
    pub(crate) fn insert(&mut self, name: &[u8], scope: Scope, rule: RuleId) -> bool {
        debug_assert!(rule != 0 && name.len() <= 255);
        let (exact, below) = match scope {
            Scope::Exact => (rule, 0),
            Scope::Below => (0, rule),
            Scope::Subtree => (rule, rule),
        };
        let (slot, found) = self.probe(name);
        if let Some(off) = found {
            let (e, b) = self.rules_at(off);
            let merged = (if e == 0 { exact } else { e }, if b == 0 { below } else { b });
            if merged != (e, b) {
                // Rare (a name listed twice with different scopes): the
                // entry moves to the end and the old one is skipped.
                let (f, _) = self.layout(off);
                if let Some(flags) = self.arena.get_mut(f) {
                    *flags |= DEAD;
                }
                let new = self.push(name, merged.0, merged.1);
                // `probe` returns slots in range: always `Some`.
                if let Some(s) = self.slots.get_mut(slot) {
                    *s = new as u32 + 1;
                }
            }
            return false;
        }
        let off = self.push(name, exact, below);
        if let Some(s) = self.slots.get_mut(slot) {
            *s = off as u32 + 1;
        }
        self.len += 1;
        if self.len * 4 >= self.slots.len() * 3 {
            self.grow();
        }
        true
    }

    // Cannot fail: as in `probe`, every index is masked to the table.
    #[allow(clippy::indexing_slicing)]
    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        let mask = self.slots.len() - 1;
        for s in old.into_iter().filter(|&s| s != 0) {
            let mut i = self.hasher.hash_one(self.name_at(s as usize - 1)) as usize & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }

    /// Whether `name` has an entry.
    pub(crate) fn contains(&self, name: &[u8]) -> bool {
        self.probe(name).1.is_some()
    }

    /// The most specific rule matching `qname` (lower-case wire format):
    /// `(labels above qname where it matched, rule)`.
    pub(crate) fn lookup(&self, qname: &[u8]) -> Option<(usize, RuleId)> {
        if self.len == 0 {
            return None;
        }
        let mut suffix = qname;
        let mut depth = 0;
        while let &[len, ref labels @ ..] = suffix
            && len != 0
        {
            if let (_, Some(off)) = self.probe(suffix) {
                let (exact, below) = self.rules_at(off);
                let rule = if depth == 0 { exact } else { below };
                if rule != 0 {
                    return Some((depth, rule));
                }
            }
            // A label running past the end ends the walk.
            suffix = labels.get(len as usize..).unwrap_or_default();
            depth += 1;
        }
        None
    }

    /// Every stored name, in insertion order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut off = 0;
        std::iter::from_fn(move || {
            while off < self.arena.len() {
                let (f, len) = self.layout(off);
                let here = off;
                off += len;
                if self.flags_at(f) & DEAD == 0 {
                    return Some(self.name_at(here));
                }
            }
            None
        })
    }
}

/// Parses a host name as block lists write it (`ads.example.com`, a
/// trailing dot allowed) into lower-case wire format, strictly: letters,
/// digits, `-` and `_` only, labels of 1-63 octets, at most 255 in all.
pub(crate) fn parse_host(text: &str, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    let text = text.strip_suffix('.').unwrap_or(text);
    if text.is_empty() {
        return Err("empty name".into());
    }
    for label in text.split('.') {
        if label.is_empty() {
            return Err(format!("empty label in {text:?}"));
        }
        if label.len() > 63 {
            return Err(format!("label longer than 63 octets in {text:?}"));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
            return Err(format!("{c:?} is not allowed in a host name ({text:?})"));
        }
        out.push(label.len() as u8);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    if out.len() > 255 {
        return Err(format!("name longer than 255 octets ({text:?})"));
    }
    Ok(())
}

/// A wire-format name in presentation format, without the trailing dot.
pub(crate) fn wire_to_text(name: &[u8]) -> String {
    let mut s = String::new();
    let _ = proto::name::write_wire_text(name, &mut s);
    if s.len() > 1 {
        s.pop();
    }
    s
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn wire(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        parse_host(s, &mut v).expect("host");
        v
    }

    #[test]
    fn scopes_and_specificity() {
        let mut t = NameTable::default();
        t.insert(&wire("example.test"), Scope::Subtree, 1);
        t.insert(&wire("ads.example.test"), Scope::Exact, 2);
        t.insert(&wire("wild.test"), Scope::Below, 3);
        assert_eq!(t.lookup(&wire("example.test")), Some((0, 1)));
        assert_eq!(t.lookup(&wire("a.b.example.test")), Some((2, 1)));
        assert_eq!(t.lookup(&wire("ads.example.test")), Some((0, 2)));
        assert_eq!(t.lookup(&wire("x.ads.example.test")), Some((2, 1)), "exact does not cover below");
        assert_eq!(t.lookup(&wire("wild.test")), None, "below does not cover the name");
        assert_eq!(t.lookup(&wire("a.wild.test")), Some((1, 3)));
        assert_eq!(t.lookup(&wire("test")), None);
        assert_eq!(t.lookup(&wire("notexample.test")), None);
    }

    #[test]
    fn first_rule_wins_and_scopes_merge() {
        let mut t = NameTable::default();
        assert!(t.insert(&wire("a.test"), Scope::Exact, 1));
        assert!(!t.insert(&wire("a.test"), Scope::Subtree, 2));
        assert_eq!(t.lookup(&wire("a.test")), Some((0, 1)));
        assert_eq!(t.lookup(&wire("b.a.test")), Some((1, 2)));
        assert_eq!(t.len(), 1);
        assert_eq!(t.names().count(), 1, "the moved entry is listed once");
        t.insert(&wire("big.test"), Scope::Subtree, 70_000);
        assert_eq!(t.lookup(&wire("x.big.test")), Some((1, 70_000)));
        assert_eq!(t.lookup(&wire("a.test")), Some((0, 1)));
    }

    #[test]
    fn grows_and_iterates() {
        let mut t = NameTable::default();
        for i in 0..10_000 {
            t.insert(&wire(&format!("n{i}.example.test")), Scope::Subtree, 1);
        }
        assert_eq!(t.len(), 10_000);
        assert_eq!(t.names().count(), 10_000);
        assert!(t.contains(&wire("n9999.example.test")));
        assert!(!t.contains(&wire("n10000.example.test")));
        assert_eq!(t.lookup(&wire("x.n5000.example.test")), Some((1, 1)));
    }

    #[test]
    fn host_syntax() {
        let mut v = Vec::new();
        assert!(parse_host("Ads.Example.COM.", &mut v).is_ok());
        assert_eq!(wire_to_text(&v), "ads.example.com");
        for bad in ["", "a..b", "exa mple.com", "a/b.com", &format!("{}.com", "x".repeat(64))] {
            assert!(parse_host(bad, &mut v).is_err(), "{bad:?}");
        }
    }
}
