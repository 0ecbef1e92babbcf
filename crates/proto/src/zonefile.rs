//! Master-file (RFC 1035 §5) text to [`Record`]s, on `domain`'s scanner.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use domain::base::ToName;
use domain::base::rdata::ComposeRecordData;
use domain::zonefile::inplace::{Entry, Zonefile};

use crate::{Name, Record};

/// Parses master-file text into records. `origin` is used for relative names
/// when the text sets no `$ORIGIN`. `$INCLUDE` is refused.
pub fn parse_records(text: &str, origin: Option<&Name>) -> Result<Vec<Record>, String> {
    let mut zf = Zonefile::new();
    if let Some(o) = origin {
        let o =
            domain::base::Name::from_octets(bytes::Bytes::copy_from_slice(o.as_wire())).map_err(|e| e.to_string())?;
        zf.set_origin(o);
    }
    zf.extend_from_slice(text.as_bytes());
    if !text.ends_with('\n') {
        zf.extend_from_slice(b"\n");
    }
    let mut records = Vec::new();
    loop {
        match zf.next_entry() {
            Ok(Some(Entry::Record(r))) => {
                let mut rdata = Vec::new();
                r.data().compose_rdata(&mut rdata).map_err(|e| format!("{e:?}"))?;
                let name = Name::from_wire(r.owner().to_vec().as_slice()).map_err(|e| e.to_string())?;
                records.push(Record {
                    name,
                    rtype: r.rtype().to_int(),
                    class: r.class().to_int(),
                    ttl: r.ttl().as_secs(),
                    rdata: rdata.into_boxed_slice(),
                });
            }
            Ok(Some(Entry::Include { .. })) => return Err("$INCLUDE is not supported".into()),
            Ok(None) => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(records)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_relative_and_absolute() {
        let origin = Name::from_ascii("home.arpa").expect("name");
        let recs = parse_records("router 300 IN A 192.0.2.1\nnas.home.arpa. 60 IN AAAA 2001:db8::2", Some(&origin))
            .expect("parses");
        assert_eq!(recs[0].name.to_string(), "router.home.arpa.");
        assert_eq!(recs[1].rdata.len(), 16);
        assert!(parse_records("bad line here", Some(&origin)).is_err());
    }
}
