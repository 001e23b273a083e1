//! Browser sessions of the dashboard. A token is typed once into `/ui/login` and exchanged for
//! a session cookie that names the token and expires (never the token itself: it is not in a
//! URL, a log or the cookie). The cookie is signed with a key derived from the secrets key (any
//! node verifies it; without a secrets key, a random key per process: sessions end with it),
//! over the token's name, the expiry and the token's digest, so a token removed or replaced in
//! the configuration ends its sessions. Cookies are `HttpOnly; SameSite=Strict; Path=/ui` and
//! last for the browser session. State-changing forms carry a CSRF token that must equal the
//! `mc_csrf` cookie (double submit; a cross-site page can neither read nor send it).

use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::ResolvedToken;

pub const SESSION_COOKIE: &str = "mc_session";
pub const CSRF_COOKIE: &str = "mc_csrf";
/// A session's longest life, even in a browser left open.
pub const SESSION_SECS: i64 = 12 * 3600;

pub struct SessionKeys {
    key: [u8; 32],
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SessionKeys {
    pub fn new(secret: Option<&crate::secrets::SecretKey>) -> SessionKeys {
        let key = match secret {
            Some(k) => k.derived(b"multicloud/ui/session"),
            None => {
                use rand::RngCore;
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                key
            }
        };
        SessionKeys { key }
    }

    fn sign(&self, name: &str, expires: i64, token: &ResolvedToken) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(name.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(&token.sha256);
        hex(&mac.finalize().into_bytes())
    }

    /// The cookie value of a new session of `token`: `<expires>.<signature>.<name>`.
    pub fn issue(&self, token: &ResolvedToken) -> String {
        let expires = Utc::now().timestamp() + SESSION_SECS;
        format!(
            "{expires}.{}.{}",
            self.sign(&token.name, expires, token),
            token.name
        )
    }

    /// The token of a valid, unexpired session cookie.
    pub fn verify<'a>(
        &self,
        value: &str,
        tokens: &'a [ResolvedToken],
    ) -> Option<&'a ResolvedToken> {
        let mut parts = value.splitn(3, '.');
        let expires: i64 = parts.next()?.parse().ok()?;
        let signature = parts.next()?;
        let name = parts.next()?;
        if expires < Utc::now().timestamp() {
            return None;
        }
        let token = tokens.iter().find(|t| t.name == name)?;
        let want = self.sign(name, expires, token);
        bool::from(want.as_bytes().ct_eq(signature.as_bytes())).then_some(token)
    }
}

/// A new random CSRF value.
pub fn new_csrf() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

/// Whether a form's CSRF value matches the cookie's.
pub fn csrf_matches(cookie: Option<&str>, form: Option<&str>) -> bool {
    match (cookie, form) {
        (Some(c), Some(f)) if c.len() == 32 => bool::from(c.as_bytes().ct_eq(f.as_bytes())),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    fn token(name: &str, secret: &[u8]) -> ResolvedToken {
        ResolvedToken {
            name: name.into(),
            role: Role::Viewer,
            sha256: crate::config::token_digest(secret),
        }
    }

    #[test]
    fn sessions_verify_only_as_issued_and_end_with_their_token() {
        let keys = SessionKeys::new(None);
        let tokens = vec![
            token("alice", b"alice-secret-token"),
            token("bob", b"bob-secret-token"),
        ];
        let cookie = keys.issue(&tokens[0]);
        assert_eq!(
            keys.verify(&cookie, &tokens).map(|t| t.name.as_str()),
            Some("alice")
        );
        // Another name with alice's signature, a changed expiry, another key: refused.
        let (head, _) = cookie.rsplit_once('.').expect("name");
        assert!(keys.verify(&format!("{head}.bob"), &tokens).is_none());
        let (exp, rest) = cookie.split_once('.').expect("exp");
        let later: i64 = exp.parse::<i64>().expect("n") + 1000;
        assert!(keys.verify(&format!("{later}.{rest}"), &tokens).is_none());
        assert!(SessionKeys::new(None).verify(&cookie, &tokens).is_none());
        // The token replaced in the configuration: its sessions end.
        let replaced = vec![token("alice", b"alice-new-token!!")];
        assert!(keys.verify(&cookie, &replaced).is_none());
        assert!(keys.verify("garbage", &tokens).is_none());
        assert!(keys.verify("1.2", &tokens).is_none());
    }

    #[test]
    fn csrf_needs_both_equal() {
        let c = new_csrf();
        assert!(csrf_matches(Some(&c), Some(&c)));
        assert!(!csrf_matches(Some(&c), Some("x")));
        assert!(!csrf_matches(None, Some(&c)));
        assert!(!csrf_matches(Some(&c), None));
        assert!(!csrf_matches(Some("short"), Some("short")));
    }
}
