//! Trust-anchor files in the syntaxes operators already have.
//!
//! * Master-file records (RFC 1035 §5), as Unbound's `trust-anchor-file`
//!   and `auto-trust-anchor-file` and IANA's publications carry them: DS
//!   and DNSKEY mixed, TTL and class optional, `;` comments (Unbound's
//!   `;;state=` lines among them), records continued over lines inside
//!   parentheses, `$ORIGIN` and `$TTL`, algorithm and digest mnemonics
//!   where numbers are expected (RFC 4034 §5.3 and Appendix A.1:
//!   `DS 30899 RSASHA1 1 ...`).
//! * BIND's blocks: `trust-anchors { NAME static-key|initial-key FLAGS
//!   PROTOCOL ALG "KEY"; NAME static-ds|initial-ds TAG ALG DIGEST-TYPE
//!   "DIGEST"; };`, the older `managed-keys { ... };` and `trusted-keys {
//!   NAME FLAGS PROTOCOL ALG "KEY"; };`, with `//`, `#` and `/* */`
//!   comments. Initial keys are taken as anchors as they are (RFC 5011
//!   state is the resolver's business, kept elsewhere).
//!
//! Every error names the line it is on.

// A decoder of operator-supplied text: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use proto::{Name, Record, rtype};

/// Why an anchor file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct AnchorFileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong there.
    pub message: String,
}

fn fail<T>(line: usize, message: impl Into<String>) -> Result<T, AnchorFileError> {
    Err(AnchorFileError { line, message: message.into() })
}

/// DNSSEC algorithm mnemonics (IANA registry; RFC 4034 Appendix A.1 and
/// its successors).
const ALGORITHMS: &[(&str, u8)] = &[
    ("RSAMD5", 1),
    ("DH", 2),
    ("DSA", 3),
    ("RSASHA1", 5),
    ("DSA-NSEC3-SHA1", 6),
    ("RSASHA1-NSEC3-SHA1", 7),
    ("RSASHA256", 8),
    ("RSASHA512", 10),
    ("ECC-GOST", 12),
    ("ECDSAP256SHA256", 13),
    ("ECDSAP384SHA384", 14),
    ("ED25519", 15),
    ("ED448", 16),
    ("INDIRECT", 252),
    ("PRIVATEDNS", 253),
    ("PRIVATEOID", 254),
];

/// DS digest type mnemonics.
const DIGESTS: &[(&str, u8)] =
    &[("SHA-1", 1), ("SHA1", 1), ("SHA-256", 2), ("SHA256", 2), ("GOST", 3), ("SHA-384", 4), ("SHA384", 4)];

fn number(word: &str, table: &[(&str, u8)]) -> Option<String> {
    if word.parse::<u8>().is_ok() {
        return Some(word.to_string());
    }
    table.iter().find(|(m, _)| m.eq_ignore_ascii_case(word)).map(|(_, v)| v.to_string())
}

/// Parses a trust-anchor file: DS and DNSKEY records only.
pub fn parse(text: &str) -> Result<Vec<Record>, AnchorFileError> {
    let bind = bind_tokens(text);
    if bind.as_ref().is_ok_and(|t| t.first().is_some_and(|(_, w)| is_bind_block(w))) {
        return parse_bind(bind.unwrap_or_default());
    }
    parse_master(text)
}

fn is_bind_block(word: &str) -> bool {
    matches!(word, "trust-anchors" | "managed-keys" | "trusted-keys")
}

/// One record in presentation format (absolute owner, TTL, class, type,
/// data with numbers for mnemonics) to a [`Record`].
fn record(line: usize, owner: &str, ttl: u32, rtype_word: &str, data: &[String]) -> Result<Record, AnchorFileError> {
    let t = rtype::from_text(rtype_word);
    let mut data = data.to_vec();
    match t {
        Some(rtype::DS) => {
            if let Some(a) = data.get_mut(1) {
                *a = number(a, ALGORITHMS).map_or_else(|| fail(line, format!("unknown algorithm {a:?}")), Ok)?;
            }
            if let Some(d) = data.get_mut(2) {
                *d = number(d, DIGESTS).map_or_else(|| fail(line, format!("unknown digest type {d:?}")), Ok)?;
            }
        }
        Some(rtype::DNSKEY) => {
            if let Some(a) = data.get_mut(2) {
                *a = number(a, ALGORITHMS).map_or_else(|| fail(line, format!("unknown algorithm {a:?}")), Ok)?;
            }
        }
        _ => return fail(line, format!("{rtype_word} is not a trust anchor: only DS and DNSKEY records are")),
    }
    let text = format!("{owner} {ttl} IN {rtype_word} {}\n", data.join(" "));
    match proto::zonefile::parse_records(&text, Some(&Name::root())) {
        Ok(mut v) if v.len() == 1 => Ok(v.remove(0)),
        Ok(_) => fail(line, "not one record"),
        Err(e) => fail(line, format!("{owner} {rtype_word}: {e}")),
    }
}

// ---------------------------------------------------------------------------
// Master-file syntax.

/// The `;` comment removed, outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return line.get(..i).unwrap_or(line),
            _ => {}
        }
    }
    line
}

fn absolute(word: &str, origin: &Name, line: usize) -> Result<String, AnchorFileError> {
    if word == "@" {
        return Ok(origin.to_string());
    }
    if word.ends_with('.') {
        return Ok(word.to_string());
    }
    let origin = origin.to_string();
    let joined = if origin == "." { format!("{word}.") } else { format!("{word}.{origin}") };
    Name::from_ascii(&joined).map_or_else(|e| fail(line, format!("bad name {word:?}: {e}")), |_| Ok(joined))
}

fn parse_master(text: &str) -> Result<Vec<Record>, AnchorFileError> {
    let mut out = Vec::new();
    let mut origin = Name::root();
    let mut default_ttl = 3600u32;
    let mut last_owner: Option<String> = None;
    // A logical record: its first line, whether that line began with
    // blank space (no owner), and its words.
    let mut pending: Option<(usize, bool, Vec<String>)> = None;
    let mut depth = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = strip_comment(raw);
        let content = if content.trim_start().starts_with('#') { "" } else { content };
        if depth == 0 && content.trim().is_empty() {
            continue;
        }
        let entry = pending.get_or_insert_with(|| (line, raw.starts_with([' ', '\t']), Vec::new()));
        for c in content.chars() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => return fail(line, "')' without '('"),
                ')' => depth -= 1,
                _ => {}
            }
        }
        entry.2.extend(content.replace(['(', ')'], " ").split_whitespace().map(str::to_string));
        if depth > 0 {
            continue;
        }
        let Some((first, blank, words)) = pending.take() else { continue };
        let Some(head) = words.first() else { continue };
        if head.starts_with('$') {
            match (head.to_ascii_uppercase().as_str(), words.get(1)) {
                ("$ORIGIN", Some(o)) => {
                    origin = Name::from_ascii(&absolute(o, &origin, first)?)
                        .or_else(|e| fail(first, format!("$ORIGIN {o}: {e}")))?;
                }
                ("$TTL", Some(t)) => default_ttl = t.parse().or_else(|_| fail(first, format!("$TTL {t:?}")))?,
                (d, _) => return fail(first, format!("{d} is not supported in a trust-anchor file")),
            }
            continue;
        }
        let mut rest = words.as_slice();
        let owner = if blank {
            last_owner.clone().map_or_else(|| fail(first, "a record without an owner name"), Ok)?
        } else {
            let o = absolute(head, &origin, first)?;
            rest = rest.get(1..).unwrap_or_default();
            o
        };
        let mut ttl = default_ttl;
        // TTL and class, in either order (RFC 1035 §5.1).
        for _ in 0..2 {
            match rest.first() {
                Some(w) if w.parse::<u32>().is_ok() => {
                    ttl = w.parse().unwrap_or(ttl);
                    rest = rest.get(1..).unwrap_or_default();
                }
                Some(w) if w.eq_ignore_ascii_case("IN") => rest = rest.get(1..).unwrap_or_default(),
                Some(w) if matches!(w.to_ascii_uppercase().as_str(), "CH" | "HS" | "CS") => {
                    return fail(first, format!("class {w}: trust anchors are class IN"));
                }
                _ => {}
            }
        }
        let Some((t, data)) = rest.split_first() else { return fail(first, "a record without a type") };
        out.push(record(first, &owner, ttl, t, data)?);
        last_owner = Some(owner);
    }
    if let Some((line, _, _)) = pending {
        return fail(line, "unbalanced '(': the record never ends");
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// BIND syntax.

/// Words, quoted strings (quotes removed), and the punctuation `{`, `}`,
/// `;`, each with its line; comments (`//`, `#`, `/* */`) dropped.
fn bind_tokens(text: &str) -> Result<Vec<(usize, String)>, AnchorFileError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<(usize, String)>, line: usize| {
        if !word.is_empty() {
            out.push((line, std::mem::take(word)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                flush(&mut word, &mut out, line);
                line += 1;
            }
            '#' => {
                flush(&mut word, &mut out, line);
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                flush(&mut word, &mut out, line);
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                flush(&mut word, &mut out, line);
                chars.next();
                let start = line;
                let mut prev = '\0';
                loop {
                    match chars.next() {
                        None => return fail(start, "comment never closed"),
                        Some('/') if prev == '*' => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            prev = c;
                        }
                    }
                }
            }
            '"' => {
                flush(&mut word, &mut out, line);
                let start = line;
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return fail(start, "string never closed"),
                        Some('"') => break,
                        Some('\n') => {
                            line += 1;
                            s.push(' ');
                        }
                        Some(c) => s.push(c),
                    }
                }
                out.push((start, s));
            }
            '{' | '}' | ';' => {
                flush(&mut word, &mut out, line);
                out.push((line, c.to_string()));
            }
            c if c.is_whitespace() => flush(&mut word, &mut out, line),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out, line);
    Ok(out)
}

fn parse_bind(tokens: Vec<(usize, String)>) -> Result<Vec<Record>, AnchorFileError> {
    let mut out = Vec::new();
    let mut it = tokens.into_iter().peekable();
    while let Some((line, block)) = it.next() {
        if block == ";" {
            continue;
        }
        if !is_bind_block(&block) {
            return fail(line, format!("expected trust-anchors, managed-keys or trusted-keys, found {block:?}"));
        }
        match it.next() {
            Some((_, b)) if b == "{" => {}
            _ => return fail(line, format!("{block} must be followed by '{{'")),
        }
        loop {
            // One entry, up to its `;`, or the `}` that closes the block.
            let mut entry: Vec<(usize, String)> = Vec::new();
            let closed = loop {
                match it.next() {
                    None => return fail(line, format!("{block} block never closed")),
                    Some((_, t)) if t == ";" => break false,
                    Some((l, t)) if t == "}" => {
                        if !entry.is_empty() {
                            return fail(l, "an entry must end with ';'");
                        }
                        break true;
                    }
                    Some(t) => entry.push(t),
                }
            };
            if closed {
                break;
            }
            let Some((first, owner)) = entry.first().cloned() else { continue };
            let owner = if owner.ends_with('.') { owner } else { format!("{owner}.") };
            let words: Vec<String> = entry.iter().skip(1).map(|(_, w)| w.clone()).collect();
            let (kind, data) = if block == "trusted-keys" {
                ("static-key", words.as_slice())
            } else {
                match words.split_first() {
                    Some((k, d)) => (k.as_str(), d),
                    None => return fail(first, "an entry without a key"),
                }
            };
            let rtype_word = match kind {
                "static-key" | "initial-key" => "DNSKEY",
                "static-ds" | "initial-ds" => "DS",
                other => return fail(first, format!("unknown anchor kind {other:?}")),
            };
            // Flags, protocol, algorithm (or tag, algorithm, digest type),
            // then the key or digest, which may have been split over words.
            let Some((head, tail)) = data.split_at_checked(3).filter(|(_, t)| !t.is_empty()) else {
                return fail(first, format!("{kind} needs four fields"));
            };
            let mut fields = head.to_vec();
            fields.push(tail.iter().map(|w| w.replace(' ', "")).collect::<String>());
            out.push(record(first, &owner, 3600, rtype_word, &fields)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const KSK_DS: &str = "20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D";
    const KEY: &str = "AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3+/4RgWOq7HrxRixHlFlExOLAJr5emLvN7SWXgnLh4+B5xQlNVz8Og8kvArMtNROxVQuCaSnIDdD5LKyWbRd2n9WGe2R8PzgCmr3EgVLrjyBxWezF0jLHwVN8efS3rCj/EWgvIWgb9tarpVUDK/b58Da+sqqls3eNbuv7pr+eoZG+SrDK6nWeL3c6H5Apxz7LjVc1uTIdsIXxuOLYA4/ilBmSVIzuDWfdRUfhHdY6+cn8HFRm+2hM8AnXGXws9555KrUB5qihylGa8subX2Nn6UwNR1AkUTV74bU=";

    fn one(text: &str) -> Record {
        let v = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(v.len(), 1, "{text:?}");
        v.into_iter().next().unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn master_file_forms_agree() {
        let plain = one(&format!(". 172800 IN DS {KSK_DS}"));
        for text in [
            format!(". DS {KSK_DS}"),
            format!(". IN DS {KSK_DS}"),
            format!(". 3600 DS {KSK_DS}"),
            format!(". IN 3600 DS {KSK_DS} ; with a comment"),
            "; IANA root anchor\n\n. DS 20326 RSASHA256 SHA-256 (\n  E06D44B80B8F1D39A95C0B0D7C65D084\n  58E880409BBC683457104237C7F8EC8D )\n".to_string(),
            format!("$ORIGIN .\n@ DS {KSK_DS}"),
        ] {
            let r = one(&text);
            assert_eq!((r.name.clone(), r.rtype, r.rdata.clone()), (plain.name.clone(), plain.rtype, plain.rdata.clone()), "{text}");
        }
    }

    #[test]
    fn dnskey_with_mnemonic_and_mixed_with_ds() {
        let text = format!(
            ";;id: . 1 (autotrust)\n;;state=2 [ VALID ]\nexample. DNSKEY 257 3 RSASHA256 {KEY}\nexample. 86400 IN DS 30899 RSASHA1 1 0123456789ABCDEF0123456789ABCDEF01234567\n"
        );
        let v = parse(&text).expect("parses");
        assert_eq!(v.iter().map(|r| r.rtype).collect::<Vec<_>>(), vec![rtype::DNSKEY, rtype::DS]);
        assert_eq!(v[0].rdata[3], 8);
        assert_eq!(v[1].rdata[2], 5);
    }

    #[test]
    fn bind_blocks() {
        let text = format!(
            "// BIND\ntrust-anchors {{\n  /* the root */\n  . initial-ds {KSK_DS_Q};\n  example. static-key 257 3 8 \"{a}\n {b}\";\n}};\n# older\nmanaged-keys {{ example.org initial-key 257 3 8 \"{KEY}\"; }};\ntrusted-keys {{ example.net. 257 3 8 \"{KEY}\"; }};\n",
            KSK_DS_Q = "20326 8 2 \"E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\"",
            a = &KEY[..40],
            b = &KEY[40..]
        );
        let v = parse(&text).expect("parses");
        let names: Vec<String> = v.iter().map(|r| format!("{} {}", r.name, r.rtype)).collect();
        assert_eq!(names, [". 43", "example. 48", "example.org. 48", "example.net. 48"]);
        assert_eq!(v[0].rdata, one(&format!(". DS {KSK_DS}")).rdata);
        assert_eq!(v[1].rdata, one(&format!("example. DNSKEY 257 3 8 {KEY}")).rdata);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse(&format!(". DS {KSK_DS}\nwww.example. A 192.0.2.1\n")).expect_err("not an anchor");
        assert_eq!(e.line, 2);
        let e = parse(&format!("\n\n. DS 20326 NOSUCHALG 2 {}\n", &KSK_DS[9..])).expect_err("bad algorithm");
        assert_eq!(e.line, 3);
        let e = parse(". DS 20326 8 2 (\nE06D\n").expect_err("open parenthesis");
        assert_eq!(e.line, 1);
        let e = parse("trust-anchors {\n . initial-ds 1 2 3 \"AB\";\n").expect_err("unclosed block");
        assert_eq!(e.line, 1);
        let e = parse("trust-anchors {\n . wrong-kind 1 2 3 \"AB\";\n};").expect_err("kind");
        assert_eq!(e.line, 2);
        assert!(parse("").expect("empty is fine").is_empty());
    }
}
