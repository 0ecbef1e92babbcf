//! Owned domain names in lower-cased, uncompressed wire format.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::fmt;

use crate::WireError;

/// The longest a name may be in wire format (RFC 1035 §3.1).
pub const MAX_NAME_LEN: usize = 255;
/// The longest a single label may be.
pub const MAX_LABEL_LEN: usize = 63;

/// A domain name: uncompressed wire format, ASCII lower-cased, always
/// absolute (ends with the root label).
///
/// Comparison and hashing are therefore case-insensitive by construction.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Box<[u8]>);

impl Name {
    /// The root name `.`.
    pub fn root() -> Name {
        Name(Box::new([0]))
    }

    /// Builds a name from uncompressed wire bytes, lower-casing it.
    /// The bytes must be a valid sequence of labels ending in the root label.
    pub fn from_wire(wire: &[u8]) -> Result<Name, WireError> {
        let len = validate_wire(wire)?;
        if len != wire.len() {
            return Err(WireError::Malformed("bytes after the root label"));
        }
        Ok(Name(wire.to_ascii_lowercase().into_boxed_slice()))
    }

    /// Parses presentation format (`www.example.test`, trailing dot optional,
    /// `\.` and `\DDD` escapes understood). Relative names are taken as
    /// absolute.
    pub fn from_ascii(text: &str) -> Result<Name, WireError> {
        let bytes = text.as_bytes();
        if bytes.is_empty() || bytes == b"." {
            return Ok(Name::root());
        }
        let mut out = Vec::with_capacity(bytes.len() + 2);
        let mut label = Vec::with_capacity(MAX_LABEL_LEN);
        let mut rest = bytes;
        while let [c, tail @ ..] = rest {
            match c {
                b'.' => {
                    if label.is_empty() {
                        return Err(WireError::BadText);
                    }
                    push_label(&mut out, &label)?;
                    label.clear();
                    rest = tail;
                }
                b'\\' => match tail {
                    [d0 @ b'0'..=b'9', d1 @ b'0'..=b'9', d2 @ b'0'..=b'9', more @ ..] => {
                        let v = (d0 - b'0') as u16 * 100 + (d1 - b'0') as u16 * 10 + (d2 - b'0') as u16;
                        label.push(u8::try_from(v).map_err(|_| WireError::BadText)?);
                        rest = more;
                    }
                    [e, more @ ..] => {
                        label.push(*e);
                        rest = more;
                    }
                    [] => return Err(WireError::BadText),
                },
                _ => {
                    label.push(*c);
                    rest = tail;
                }
            }
        }
        if !label.is_empty() {
            push_label(&mut out, &label)?;
        }
        out.push(0);
        if out.len() > MAX_NAME_LEN {
            return Err(WireError::NameTooLong);
        }
        out.make_ascii_lowercase();
        Ok(Name(out.into_boxed_slice()))
    }

    /// The wire bytes, including the final root label.
    pub fn as_wire(&self) -> &[u8] {
        &self.0
    }

    /// Whether this is the root name.
    pub fn is_root(&self) -> bool {
        self.0.len() == 1
    }

    /// Number of labels, not counting the root label (`.` has 0).
    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    /// The labels from left to right, without the root label.
    pub fn labels(&self) -> Labels<'_> {
        Labels { wire: &self.0, pos: 0 }
    }

    /// The name with its first label removed, or `None` for the root.
    pub fn parent(&self) -> Option<Name> {
        if self.is_root() {
            return None;
        }
        let (&len, labels) = self.0.split_first()?;
        Some(Name(labels.get(len as usize..)?.into()))
    }

    /// Whether `self` equals `ancestor` or lies below it.
    pub fn is_subdomain_of(&self, ancestor: &Name) -> bool {
        let a = ancestor.as_wire();
        if a.len() > self.0.len() {
            return false;
        }
        let offset = self.0.len() - a.len();
        if self.0.get(offset..) != Some(a) {
            return false;
        }
        // The suffix must start on a label boundary.
        let mut pos = 0;
        while pos < offset {
            // `pos < offset <= len`: always present.
            let Some(&len) = self.0.get(pos) else {
                return false;
            };
            pos += 1 + len as usize;
        }
        pos == offset
    }

    /// The last `n` labels of the name (the ancestor with `n` labels).
    /// Returns `self` unchanged when it has `n` labels or fewer.
    pub fn suffix(&self, n: usize) -> Name {
        let total = self.label_count();
        if n >= total {
            return self.clone();
        }
        let skip: usize = self.labels().take(total - n).map(|l| 1 + l.len()).sum();
        // The skipped labels lie within the name: always `Some`.
        match self.0.get(skip..) {
            Some(rest) => Name(rest.into()),
            None => self.clone(),
        }
    }

    /// A new name with `label` prepended (`label.self`).
    pub fn prepend(&self, label: &[u8]) -> Result<Name, WireError> {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(WireError::NameTooLong);
        }
        if self.0.len() + 1 + label.len() > MAX_NAME_LEN {
            return Err(WireError::NameTooLong);
        }
        let mut v = Vec::with_capacity(self.0.len() + 1 + label.len());
        v.push(label.len() as u8);
        v.extend(label.iter().map(u8::to_ascii_lowercase));
        v.extend_from_slice(&self.0);
        Ok(Name(v.into_boxed_slice()))
    }

    /// Replaces the suffix `from` of `self` with `to` (DNAME substitution,
    /// RFC 6672). `self` must be below `from`.
    pub fn replace_suffix(&self, from: &Name, to: &Name) -> Result<Name, WireError> {
        if !self.is_subdomain_of(from) {
            return Err(WireError::Malformed("name is not below the DNAME owner"));
        }
        let keep = self.0.len() - from.0.len();
        let head = self.0.get(..keep).ok_or(WireError::Malformed("name is not below the DNAME owner"))?;
        let mut v = Vec::with_capacity(keep + to.0.len());
        v.extend_from_slice(head);
        v.extend_from_slice(&to.0);
        if v.len() > MAX_NAME_LEN {
            return Err(WireError::NameTooLong);
        }
        Ok(Name(v.into_boxed_slice()))
    }

    /// Whether the first label is `*` (a wildcard owner).
    pub fn is_wildcard(&self) -> bool {
        matches!(*self.0, [1, b'*', ..])
    }
}

fn push_label(out: &mut Vec<u8>, label: &[u8]) -> Result<(), WireError> {
    if label.len() > MAX_LABEL_LEN {
        return Err(WireError::NameTooLong);
    }
    out.push(label.len() as u8);
    out.extend_from_slice(label);
    Ok(())
}

/// Checks uncompressed wire labels and returns the name's length.
pub fn validate_wire(wire: &[u8]) -> Result<usize, WireError> {
    let mut pos = 0;
    loop {
        let len = *wire.get(pos).ok_or(WireError::Truncated)? as usize;
        if len == 0 {
            pos += 1;
            break;
        }
        if len > MAX_LABEL_LEN {
            return Err(WireError::BadLabelType);
        }
        pos += 1 + len;
        if pos >= MAX_NAME_LEN {
            return Err(WireError::NameTooLong);
        }
    }
    if pos > wire.len() {
        return Err(WireError::Truncated);
    }
    Ok(pos)
}

/// Iterator over the labels of a [`Name`].
#[derive(Debug, Clone)]
pub struct Labels<'a> {
    wire: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let len = *self.wire.get(self.pos)? as usize;
        if len == 0 {
            return None;
        }
        let label = self.wire.get(self.pos + 1..self.pos + 1 + len)?;
        self.pos += 1 + len;
        Some(label)
    }
}

/// Lower-cases a wire-format name into `buf` (at most 255 octets) without
/// allocating: how the hot path keys caches and lists by a client's name.
pub fn lower_into<'a>(name: &[u8], buf: &'a mut [u8; MAX_NAME_LEN]) -> &'a [u8] {
    let n = name.len().min(MAX_NAME_LEN);
    // The zip stops at `buf`'s MAX_NAME_LEN octets, as `n` does.
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    // Cannot fail: `n <= MAX_NAME_LEN == buf.len()`.
    #[allow(clippy::indexing_slicing)]
    let out = &buf[..n];
    out
}

/// Writes wire-format labels in presentation format, escaping as RFC 4343.
pub fn write_wire_text(wire: &[u8], f: &mut impl fmt::Write) -> fmt::Result {
    let mut pos = 0;
    let mut any = false;
    while let Some(&len) = wire.get(pos) {
        if len == 0 {
            break;
        }
        let Some(label) = wire.get(pos + 1..pos + 1 + len as usize) else {
            break;
        };
        for &b in label {
            match b {
                b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
                    f.write_char('\\')?;
                    f.write_char(b as char)?;
                }
                0x21..=0x7e => f.write_char(b as char)?,
                _ => write!(f, "\\{b:03}")?,
            }
        }
        f.write_char('.')?;
        any = true;
        pos += 1 + len as usize;
    }
    if !any {
        f.write_char('.')?;
    }
    Ok(())
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_wire_text(&self.0, f)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

impl std::str::FromStr for Name {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Name, WireError> {
        Name::from_ascii(s)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).expect("valid name")
    }

    #[test]
    fn text_round_trip_and_case() {
        assert_eq!(n("WWW.Example.TEST.").to_string(), "www.example.test.");
        assert_eq!(n("www.example.test"), n("www.example.test."));
        assert_eq!(n(".").to_string(), ".");
        assert_eq!(n("a\\.b.test").label_count(), 2);
        assert_eq!(n("a\\.b.test").to_string(), "a\\.b.test.");
    }

    #[test]
    fn hierarchy() {
        let www = n("www.example.test");
        assert!(www.is_subdomain_of(&n("example.test")));
        assert!(www.is_subdomain_of(&Name::root()));
        assert!(!www.is_subdomain_of(&n("ample.test")));
        assert!(!n("example.test").is_subdomain_of(&www));
        assert_eq!(www.parent(), Some(n("example.test")));
        assert_eq!(www.suffix(1), n("test"));
        assert_eq!(www.suffix(0), Name::root());
        assert_eq!(www.suffix(9), www);
        assert_eq!(n("x.old.dname.test").replace_suffix(&n("old.dname.test"), &n("z004.test")), Ok(n("x.z004.test")));
    }

    #[test]
    fn limits() {
        let long = "a".repeat(64);
        assert_eq!(Name::from_ascii(&long), Err(WireError::NameTooLong));
        let many = "abcdefghi.".repeat(26);
        assert_eq!(Name::from_ascii(&many), Err(WireError::NameTooLong));
        assert!(Name::from_ascii("a..b").is_err());
    }
}
