//! The keyless wire protocol, version 1 (documented in `docs/keyless.md`).
//!
//! Every message, in both directions, is a frame: a 12-byte header and a
//! body. Operations carry an id chosen by the edge and echoed by the key
//! server, so one connection pipelines many of them and answers may come
//! back in any order.
//!
//! ```text
//! 0      version   u8   1
//! 1      opcode    u8
//! 2..4   reserved  u16  0
//! 4..8   id        u32  big-endian
//! 8..12  length    u32  big-endian, of the body, at most MAX_BODY
//! 12..   body
//! ```

/// The protocol version this code speaks.
pub const VERSION: u8 = 1;
/// Header length.
pub const HEADER: usize = 12;
/// The largest body either side accepts; a longer frame ends the connection.
pub const MAX_BODY: usize = 16 * 1024;
/// Length of a key id: SHA-256 of the certificate's SubjectPublicKeyInfo.
pub const KEY_ID: usize = 32;

/// Operation codes. Responses have the high bit set.
pub mod op {
    /// Request: the body is echoed back (liveness, round-trip time).
    pub const PING: u8 = 0x01;
    /// Request: key id, signature scheme (u16), message to sign.
    pub const SIGN: u8 = 0x02;
    /// Request (empty body): this edge's data keys for sealing its disk.
    pub const DATA_KEYS: u8 = 0x03;
    /// Response to PING: the same body.
    pub const PONG: u8 = 0x81;
    /// Response to SIGN: the signature.
    pub const SIGNATURE: u8 = 0x82;
    /// Response to DATA_KEYS: the rotation period in seconds (u32), then
    /// for each epoch held, newest first, the epoch (u32) and its 32-byte key.
    pub const KEYS: u8 = 0x83;
    /// Response to anything: an error code (u8) and a UTF-8 reason.
    pub const ERROR: u8 = 0xff;
}

/// Error codes carried by [`op::ERROR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorCode {
    /// The frame could not be read; the connection is closed.
    BadFrame = 1,
    /// Unknown protocol version; the connection is closed.
    Version = 2,
    /// Unknown opcode.
    UnknownOp = 3,
    /// No key with this id here.
    KeyNotFound = 4,
    /// This edge may not use this key (edge list or region).
    Forbidden = 5,
    /// The edge's certificate is revoked or unknown; the connection is closed.
    Revoked = 6,
    /// The message is not a TLS handshake's signature input.
    BadMessage = 7,
    /// The key cannot sign with this scheme.
    Scheme = 8,
    /// The signature failed on the key server.
    Internal = 9,
}

impl ErrorCode {
    /// The code for a byte, `Internal` for unknown ones.
    pub fn from_u8(b: u8) -> ErrorCode {
        match b {
            1 => ErrorCode::BadFrame,
            2 => ErrorCode::Version,
            3 => ErrorCode::UnknownOp,
            4 => ErrorCode::KeyNotFound,
            5 => ErrorCode::Forbidden,
            6 => ErrorCode::Revoked,
            7 => ErrorCode::BadMessage,
            8 => ErrorCode::Scheme,
            _ => ErrorCode::Internal,
        }
    }

    /// A short name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::Version => "version",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::KeyNotFound => "key_not_found",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Revoked => "revoked",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::Scheme => "scheme",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol version.
    pub version: u8,
    /// Opcode.
    pub opcode: u8,
    /// Operation id.
    pub id: u32,
    /// Body length.
    pub length: usize,
}

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not version 1.
    #[error("protocol version {0}, this side speaks 1")]
    Version(u8),
    /// Body longer than [`MAX_BODY`].
    #[error("frame body of {0} bytes is over the limit")]
    TooLong(usize),
}

impl Header {
    /// Decodes and checks a header.
    pub fn decode(b: &[u8; HEADER]) -> Result<Header, FrameError> {
        let [version, opcode, _, _, i0, i1, i2, i3, l0, l1, l2, l3] = *b;
        let id = u32::from_be_bytes([i0, i1, i2, i3]);
        let length = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        if length > MAX_BODY {
            return Err(FrameError::TooLong(length));
        }
        Ok(Header { version, opcode, id, length })
    }
}

/// Appends a frame with `opcode`, `id` and the concatenation of `body` to `out`.
pub fn encode(out: &mut Vec<u8>, opcode: u8, id: u32, body: &[&[u8]]) {
    let len: usize = body.iter().map(|b| b.len()).sum();
    out.extend_from_slice(&[VERSION, opcode, 0, 0]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    for b in body {
        out.extend_from_slice(b);
    }
}

/// One data key: its epoch and the key.
pub type DataKey = (u32, [u8; 32]);

/// Encodes a KEYS body.
pub fn encode_keys(rotation_s: u32, keys: &[DataKey]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + keys.len() * 36);
    out.extend_from_slice(&rotation_s.to_be_bytes());
    for (epoch, key) in keys {
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(key);
    }
    out
}

/// Decodes a KEYS body; `None` when malformed or empty.
pub fn decode_keys(body: &[u8]) -> Option<(u32, Vec<DataKey>)> {
    let (rotation, mut rest) = body.split_first_chunk::<4>()?;
    let mut keys = Vec::new();
    while !rest.is_empty() {
        let (epoch, r) = rest.split_first_chunk::<4>()?;
        let (key, r) = r.split_first_chunk::<32>()?;
        keys.push((u32::from_be_bytes(*epoch), *key));
        rest = r;
    }
    (!keys.is_empty()).then_some((u32::from_be_bytes(*rotation), keys))
}

/// A SIGN request's body, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignRequest<'a> {
    /// Which key.
    pub key_id: &'a [u8; KEY_ID],
    /// TLS SignatureScheme code.
    pub scheme: u16,
    /// What to sign.
    pub message: &'a [u8],
}

impl<'a> SignRequest<'a> {
    /// Parses a SIGN body; `None` when it is too short.
    pub fn parse(body: &'a [u8]) -> Option<SignRequest<'a>> {
        let (key_id, rest) = body.split_first_chunk::<KEY_ID>()?;
        let (scheme, message) = rest.split_first_chunk::<2>()?;
        Some(SignRequest { key_id, scheme: u16::from_be_bytes(*scheme), message })
    }
}

/// The context string TLS 1.3 puts before a server's CertificateVerify
/// transcript hash (RFC 8446 §4.4.3), after 64 spaces.
const TLS13_SERVER_CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify\0";

/// Whether `message` has the shape of what a TLS server signs in a
/// handshake: TLS 1.3's CertificateVerify input (64 spaces, the server
/// context, a 32- or 48-byte transcript hash) or TLS 1.2's ServerKeyExchange
/// input (two 32-byte randoms, then ECDHE parameters over a named curve).
/// The key server signs nothing else, so a compromised edge cannot use it
/// as a general signing oracle (for certificates, say) — only to complete
/// handshakes while its certificate stays valid.
pub fn is_handshake_input(message: &[u8]) -> bool {
    if let Some(rest) = message.strip_prefix(&[b' '; 64])
        && let Some(hash) = rest.strip_prefix(TLS13_SERVER_CONTEXT)
    {
        return matches!(hash.len(), 32 | 48);
    }
    // TLS 1.2: client_random, server_random, then ServerECDHParams:
    // curve_type named_curve (3), a u16 curve, a u8 length, the point.
    match message.get(64..) {
        Some([3, _, _, len, point @ ..]) => usize::from(*len) == point.len() && !point.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_headers_are_refused() {
        let mut out = Vec::new();
        encode(&mut out, op::SIGN, 7, &[&[1u8; KEY_ID], &0x0403u16.to_be_bytes(), b"msg"]);
        let head: [u8; HEADER] = out[..HEADER].try_into().expect("header");
        let h = Header::decode(&head).expect("valid");
        assert_eq!((h.opcode, h.id, h.length), (op::SIGN, 7, KEY_ID + 5));
        let req = SignRequest::parse(&out[HEADER..]).expect("sign body");
        assert_eq!((req.scheme, req.message), (0x0403, &b"msg"[..]));
        assert!(SignRequest::parse(&[0u8; KEY_ID + 1]).is_none());
        let mut bad = head;
        bad[0] = 2;
        assert_eq!(Header::decode(&bad), Err(FrameError::Version(2)));
        let mut long = head;
        long[8..12].copy_from_slice(&(MAX_BODY as u32 + 1).to_be_bytes());
        assert_eq!(Header::decode(&long), Err(FrameError::TooLong(MAX_BODY + 1)));
        let keys = encode_keys(86400, &[(9, [1; 32]), (8, [2; 32])]);
        assert_eq!(decode_keys(&keys), Some((86400, vec![(9, [1; 32]), (8, [2; 32])])));
        assert_eq!(decode_keys(&keys[..keys.len() - 1]), None);
        assert_eq!(decode_keys(&keys[..4]), None);
    }

    #[test]
    fn only_handshake_inputs_are_signed() {
        let mut tls13 = vec![b' '; 64];
        tls13.extend_from_slice(TLS13_SERVER_CONTEXT);
        tls13.extend_from_slice(&[0xab; 32]);
        assert!(is_handshake_input(&tls13));
        tls13.push(0);
        assert!(!is_handshake_input(&tls13), "a 33-byte hash");
        let mut client = vec![b' '; 64];
        client.extend_from_slice(b"TLS 1.3, client CertificateVerify\0");
        client.extend_from_slice(&[0xab; 32]);
        assert!(!is_handshake_input(&client), "the client's context");
        let mut tls12 = vec![0x11; 64];
        tls12.extend_from_slice(&[3, 0, 29, 32]);
        tls12.extend_from_slice(&[0x22; 32]);
        assert!(is_handshake_input(&tls12));
        tls12.push(0);
        assert!(!is_handshake_input(&tls12), "a point longer than its length");
        assert!(!is_handshake_input(b"-----BEGIN CERTIFICATE-----"));
        assert!(!is_handshake_input(&[]));
    }
}
