//! Just enough of a response to count it, without allocating: the question
//! and the first Extended DNS Error.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

/// Skips a possibly compressed name at `pos`; returns the offset after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *msg.get(pos)? as usize;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return Some(pos + 2),
            l if l < 64 => pos += 1 + l,
            _ => return None,
        }
    }
    None
}

/// The question's name (wire format, as sent) and type.
pub fn question(msg: &[u8]) -> Option<(&[u8], u16)> {
    let &[_, _, _, _, qd0, qd1, ..] = msg.first_chunk::<12>()?;
    if u16::from_be_bytes([qd0, qd1]) == 0 {
        return None;
    }
    let end = skip_name(msg, 12)?;
    let t = u16_at(msg, end)?;
    Some((msg.get(12..end)?, t))
}

fn u16_at(msg: &[u8], pos: usize) -> Option<u16> {
    msg.get(pos..)?.first_chunk().map(|b| u16::from_be_bytes(*b))
}

/// The INFO-CODE of the first EDE option in the OPT record, if any.
pub fn first_ede(msg: &[u8]) -> Option<u16> {
    let count = |i: usize| u16_at(msg, 4 + 2 * i).map(usize::from);
    let (qd, an, ns, ar) = (count(0)?, count(1)?, count(2)?, count(3)?);
    if ar == 0 {
        return None;
    }
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    for i in 0..an + ns + ar {
        pos = skip_name(msg, pos)?;
        let rtype = u16_at(msg, pos)?;
        let rdlen = u16_at(msg, pos + 8)? as usize;
        let rdata = pos + 10;
        if rtype == 41 && i >= an + ns {
            let mut o = rdata;
            while o + 4 <= rdata + rdlen {
                let (code, len) = (u16_at(msg, o)?, u16_at(msg, o + 2)? as usize);
                if code == 15 {
                    return u16_at(msg, o + 4);
                }
                o += 4 + len;
            }
            return None;
        }
        pos = rdata + rdlen;
    }
    None
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_question_and_the_ede() {
        let mut buf = Vec::new();
        let mut w = proto::MessageWriter::new(&mut buf, 1, proto::flags::QR | 3);
        w.question(b"\x03www\x07example\x04test\x00", 28, 1);
        w.opt(1232, false, 0, &[proto::Ede::new(15, "blocked")]);
        w.finish();
        let (name, qtype) = question(&buf).expect("question");
        assert_eq!((name.len(), qtype), (18, 28));
        assert_eq!(first_ede(&buf), Some(15));
        for cut in 0..buf.len() {
            let _ = first_ede(&buf[..cut]); // never a panic
            let _ = question(&buf[..cut]);
        }
        assert_eq!(question(&[0; 5]), None);
    }
}
