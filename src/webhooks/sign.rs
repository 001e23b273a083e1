//! `sha256=<hex>` signatures: HMAC-SHA256 keyed with the webhook secret over
//! `"<timestamp>.<body>"`.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const PREFIX: &str = "sha256=";

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The value of `X-Multicloud-Signature`: `"sha256=" + lowercase hex of
/// HMAC-SHA256(secret, "<timestamp>.<body>")`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(PREFIX.len() + 64);
    out.push_str(PREFIX);
    for b in mac(secret, timestamp, body) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Whether `header_value` is the signature of `timestamp` and `body` under `secret`, compared in
/// constant time. Hex digits may be upper or lower case. Checking that the timestamp is recent
/// (replay protection) is up to the caller.
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], header_value: &str) -> bool {
    let Some(hex) = header_value.trim().strip_prefix(PREFIX) else {
        return false;
    };
    let Some(given) = decode_hex32(hex) else {
        return false;
    };
    let expected = mac(secret, timestamp, body);
    bool::from(expected.ct_eq(&given))
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"event":"deployment.succeeded","id":42}"#;
    // python3 -c 'import hmac,hashlib;print(hmac.new(b"secret",
    //   b"1700000000.{\"event\":\"deployment.succeeded\",\"id\":42}",hashlib.sha256).hexdigest())'
    const VECTOR: &str = "sha256=de3db331080295b20ef35fefc8654542ce32fdc556d87bb58b5ec8aab40efdc7";

    #[test]
    fn known_vectors() {
        assert_eq!(signature(b"secret", 1_700_000_000, BODY), VECTOR);
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"",b"0.",hashlib.sha256).hexdigest())'
        assert_eq!(
            signature(b"", 0, b""),
            "sha256=b849d5a581847b281957065739df36df2463d1977ea8d6e1e4e6cf33fadc68c3"
        );
    }

    #[test]
    fn verify_accepts_the_signature() {
        assert!(verify(b"secret", 1_700_000_000, BODY, VECTOR));
        assert!(verify(
            b"secret",
            1_700_000_000,
            BODY,
            &VECTOR.to_uppercase().replace("SHA256=", "sha256=")
        ));
        let sig = signature(b"k", -5, b"");
        assert!(verify(b"k", -5, b"", &sig));
    }

    #[test]
    fn verify_rejects_tampering() {
        let ts = 1_700_000_000;
        assert!(!verify(
            b"secret",
            ts,
            br#"{"event":"deployment.succeeded","id":43}"#,
            VECTOR
        ));
        assert!(!verify(b"secret", ts + 1, BODY, VECTOR));
        assert!(!verify(b"other", ts, BODY, VECTOR));
        let mut flipped = VECTOR.to_string();
        flipped.pop();
        flipped.push('8');
        assert!(!verify(b"secret", ts, BODY, &flipped));
        assert!(!verify(b"secret", ts, BODY, &VECTOR[..VECTOR.len() - 2]));
        assert!(!verify(
            b"secret",
            ts,
            BODY,
            VECTOR.trim_start_matches("sha256=")
        ));
        assert!(!verify(
            b"secret",
            ts,
            BODY,
            &VECTOR.replace("sha256=", "sha1=")
        ));
        assert!(!verify(
            b"secret",
            ts,
            BODY,
            "sha256=zz3db331080295b20ef35fefc8654542ce32fdc556d87bb58b5ec8aab40efdc7"
        ));
        assert!(!verify(b"secret", ts, BODY, ""));
    }
}
