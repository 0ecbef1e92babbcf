//! One authoritative zone loaded from a master file.

use std::collections::{BTreeMap, BTreeSet};

use proto::{Name, Record, rtype};

/// A zone: its apex and all its records, indexed by owner name.
#[derive(Debug, Clone)]
pub struct Zone {
    apex: Name,
    by_name: BTreeMap<Name, Vec<Record>>,
    /// Every owner name and every ancestor of one up to the apex, so empty
    /// non-terminals count as existing (RFC 8020).
    existing: BTreeSet<Name>,
}

impl Zone {
    /// Parses master-file text (which must set `$ORIGIN` or use absolute
    /// names and contain exactly one SOA, at the apex).
    pub fn parse(text: &str) -> Result<Zone, String> {
        Zone::from_records(proto::zonefile::parse_records(text, None)?)
    }

    /// Builds a zone from records; the SOA's owner is the apex.
    pub fn from_records(records: Vec<Record>) -> Result<Zone, String> {
        let soa: Vec<&Record> = records.iter().filter(|r| r.rtype == rtype::SOA).collect();
        let [soa] = soa.as_slice() else {
            return Err(format!("expected one SOA, found {}", soa.len()));
        };
        let apex = soa.name.clone();
        let mut by_name: BTreeMap<Name, Vec<Record>> = BTreeMap::new();
        let mut existing = BTreeSet::new();
        for r in records {
            if !r.name.is_subdomain_of(&apex) {
                return Err(format!("{} is outside the zone {apex}", r.name));
            }
            let mut n = r.name.clone();
            while n != apex && existing.insert(n.clone()) {
                match n.parent() {
                    Some(p) => n = p,
                    None => break,
                }
            }
            by_name.entry(r.name.clone()).or_default().push(r);
        }
        existing.insert(apex.clone());
        Ok(Zone { apex, by_name, existing })
    }

    /// The apex name.
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// All records.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.by_name.values().flatten()
    }

    /// The records at `name` (any type).
    pub fn at(&self, name: &Name) -> &[Record] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// The records of one type at `name`.
    pub fn rrset(&self, name: &Name, t: u16) -> Vec<Record> {
        self.at(name).iter().filter(|r| r.rtype == t).cloned().collect()
    }

    /// Whether `name` exists (has records or is an empty non-terminal).
    pub fn exists(&self, name: &Name) -> bool {
        self.existing.contains(name)
    }

    /// The names of the apex NS records.
    pub fn apex_ns(&self) -> Vec<Name> {
        self.rrset(&self.apex, rtype::NS).iter().filter_map(Record::target_name).collect()
    }

    /// The SOA record.
    pub fn soa(&self) -> Option<Record> {
        self.rrset(&self.apex, rtype::SOA).into_iter().next()
    }
}
