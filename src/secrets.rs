//! Sensitive parameters at rest (terraform `sensitive` variables, Bicep `@secure()` and ARM
//! `secure*` parameters). A crash re-run needs them again, so they are stored, but only encrypted
//! with a key the operator provides (`secrets.key_file`, or `secrets.key` / its environment
//! variable `MULTICLOUD__SECRETS__KEY`), as `{"$encrypted": "v1:<base64>"}`.
//!
//! XChaCha20-Poly1305 with a nonce derived from the value (HMAC-SHA256 under a separate subkey):
//! the same value encrypts to the same text, so an idempotent retry compares equal. The price is
//! that two deployments holding the same secret can be told to hold the same one; nothing more
//! leaks. Without a key, a deployment with sensitive values is refused (422), never stored in
//! clear.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::config::Settings;

const MARKER: &str = "$encrypted";
const VERSION: &str = "v1:";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretsError {
    #[error("invalid secrets key: {0}")]
    BadKey(String),
    #[error(
        "cannot decrypt a sensitive parameter: the secrets key is missing or not the one it was stored with"
    )]
    Decrypt,
}

/// The operator's key, split into an encryption and a nonce subkey.
pub struct SecretKey {
    cipher: XChaCha20Poly1305,
    nonce_key: [u8; 32],
    /// For keys derived for other purposes (the dashboard's session signatures).
    master: Vec<u8>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(********)")
    }
}

fn derive(master: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(master).unwrap_or_else(|_| unreachable_hmac());
    mac.update(label);
    mac.finalize().into_bytes().into()
}

// HMAC accepts keys of any length; this cannot happen.
fn unreachable_hmac() -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; 32]).unwrap_or_else(|_| unreachable_hmac())
}

impl SecretKey {
    /// A key of at least 32 bytes, given as base64 (standard alphabet).
    /// A key for another purpose, derived from the master key with `label`.
    pub fn derived(&self, label: &[u8]) -> [u8; 32] {
        derive(&self.master, label)
    }

    pub fn from_base64(text: &str) -> Result<SecretKey, SecretsError> {
        let master = B64
            .decode(text.trim())
            .map_err(|e| SecretsError::BadKey(format!("not base64: {e}")))?;
        if master.len() < 32 {
            return Err(SecretsError::BadKey(format!(
                "{} bytes; at least 32 are needed (e.g. `head -c 32 /dev/urandom | base64`)",
                master.len()
            )));
        }
        let enc = derive(&master, b"multicloud/secrets/encryption");
        Ok(SecretKey {
            cipher: XChaCha20Poly1305::new((&enc).into()),
            nonce_key: derive(&master, b"multicloud/secrets/nonce"),
            master,
        })
    }

    /// From `secrets.key_file` (whose content is the base64 key) or `secrets.key`; None when
    /// neither is set.
    pub fn from_settings(settings: &Settings) -> Result<Option<SecretKey>, SecretsError> {
        let s = &settings.secrets;
        if !s.key_file.is_empty() {
            let text = std::fs::read_to_string(&s.key_file)
                .map_err(|e| SecretsError::BadKey(format!("cannot read {}: {e}", s.key_file)))?;
            return SecretKey::from_base64(&text).map(Some);
        }
        if !s.key.is_empty() {
            return SecretKey::from_base64(&s.key).map(Some);
        }
        Ok(None)
    }

    /// The daemon's key: the configured one (`secrets.key_file` or `secrets.key`) always wins.
    /// With none configured and the embedded default database, the key generated on first
    /// start in `<data_dir>/secrets.key` (0600, owner only), created here if it does not exist
    /// yet. With an external database and no key, None: several nodes must share one key, so
    /// none is invented.
    pub fn for_daemon(
        settings: &Settings,
        embedded_database: bool,
    ) -> Result<Option<SecretKey>, SecretsError> {
        if let Some(key) = SecretKey::from_settings(settings)? {
            return Ok(Some(key));
        }
        if !embedded_database {
            return Ok(None);
        }
        let path = settings.paths.data_dir.join(GENERATED_KEY_FILE);
        load_or_generate(&path).map(Some)
    }

    fn encrypt(&self, value: &Value) -> Value {
        let plain = value.to_string();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.nonce_key)
            .unwrap_or_else(|_| unreachable_hmac());
        mac.update(plain.as_bytes());
        let digest = mac.finalize().into_bytes();
        let nonce = XNonce::from_slice(&digest[..24]);
        let sealed = self
            .cipher
            .encrypt(nonce, plain.as_bytes())
            .unwrap_or_default();
        let mut blob = digest[..24].to_vec();
        blob.extend_from_slice(&sealed);
        json!({ MARKER: format!("{VERSION}{}", B64.encode(blob)) })
    }

    fn decrypt(&self, sealed: &str) -> Result<Value, SecretsError> {
        let blob = sealed
            .strip_prefix(VERSION)
            .and_then(|b| B64.decode(b).ok())
            .filter(|b| b.len() > 24)
            .ok_or(SecretsError::Decrypt)?;
        let (nonce, ct) = blob.split_at(24);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), ct)
            .map_err(|_| SecretsError::Decrypt)?;
        serde_json::from_slice(&plain).map_err(|_| SecretsError::Decrypt)
    }
}

/// The key generated for the embedded database, under the data directory.
pub const GENERATED_KEY_FILE: &str = "secrets.key";

/// Reads the generated key at `path`, or makes a new random one there (created exclusively, so
/// two starts racing agree on one key).
fn load_or_generate(path: &std::path::Path) -> Result<SecretKey, SecretsError> {
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let bad = |e: std::io::Error| SecretsError::BadKey(format!("{}: {e}", path.display()));
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(bad)?;
        return SecretKey::from_base64(&text);
    }
    let mut master = [0u8; 32];
    rand::rng().fill_bytes(&mut master);
    let text = B64.encode(master);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(mut file) => {
            file.write_all(format!("{text}\n").as_bytes())
                .and_then(|_| file.sync_all())
                .map_err(bad)?;
            tracing::warn!(
                path = %path.display(),
                "generated a secrets key for sensitive parameters: back this file up with the \
                 database; without it the sensitive values stored there cannot be decrypted"
            );
            SecretKey::from_base64(&text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            SecretKey::from_base64(&std::fs::read_to_string(path).map_err(bad)?)
        }
        Err(e) => Err(bad(e)),
    }
}

/// Seals bytes for storage (a saved plan holds variable values in clear): with a key, `1` +
/// a random 24-byte nonce + XChaCha20-Poly1305 ciphertext; without one, `0` + the bytes (only
/// used when nothing sensitive can be in them: see the deploy handler).
pub fn seal_bytes(key: Option<&SecretKey>, plain: &[u8]) -> Vec<u8> {
    use rand::RngCore;
    match key {
        None => {
            let mut out = vec![0u8];
            out.extend_from_slice(plain);
            out
        }
        Some(k) => {
            let mut nonce = [0u8; 24];
            rand::rng().fill_bytes(&mut nonce);
            let ct = k
                .cipher
                .encrypt(XNonce::from_slice(&nonce), plain)
                .unwrap_or_default();
            let mut out = vec![1u8];
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&ct);
            out
        }
    }
}

/// Opens bytes sealed by [`seal_bytes`].
pub fn open_bytes(key: Option<&SecretKey>, sealed: &[u8]) -> Result<Vec<u8>, SecretsError> {
    match sealed.split_first() {
        Some((0, plain)) => Ok(plain.to_vec()),
        Some((1, rest)) if rest.len() > 24 => {
            let (nonce, ct) = rest.split_at(24);
            key.ok_or(SecretsError::Decrypt)?
                .cipher
                .decrypt(XNonce::from_slice(nonce), ct)
                .map_err(|_| SecretsError::Decrypt)
        }
        _ => Err(SecretsError::Decrypt),
    }
}

/// Whether a stored value is an encrypted one.
pub fn is_encrypted(v: &Value) -> bool {
    v.get(MARKER).and_then(Value::as_str).is_some()
}

/// Encrypts the values of `sensitive` parameters in place (null values stay as they are).
/// Without a key and with a sensitive value present, returns the names that need one.
pub fn seal(
    params: &mut Map<String, Value>,
    sensitive: &[&str],
    key: Option<&SecretKey>,
) -> Result<(), Vec<String>> {
    let present: Vec<String> = sensitive
        .iter()
        .filter(|name| params.get(**name).is_some_and(|v| !v.is_null()))
        .map(|n| n.to_string())
        .collect();
    let Some(key) = key else {
        return if present.is_empty() {
            Ok(())
        } else {
            Err(present)
        };
    };
    for name in present {
        if let Some(v) = params.get_mut(&name) {
            *v = key.encrypt(v);
        }
    }
    Ok(())
}

/// Decrypts every encrypted value in place (for a run).
pub fn open(params: &mut Map<String, Value>, key: Option<&SecretKey>) -> Result<(), SecretsError> {
    for v in params.values_mut() {
        if let Some(sealed) = v.get(MARKER).and_then(Value::as_str).map(str::to_string) {
            *v = key.ok_or(SecretsError::Decrypt)?.decrypt(&sealed)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_base64(&B64.encode([byte; 32])).expect("key")
    }

    #[test]
    fn bytes_round_trip_sealed_and_a_wrong_key_is_refused() {
        let plan = b"plan file with a password=hunter22".to_vec();
        let sealed = seal_bytes(Some(&key(1)), &plan);
        assert!(!sealed.windows(8).any(|w| w == b"hunter22"));
        assert_eq!(open_bytes(Some(&key(1)), &sealed).expect("open"), plan);
        assert!(open_bytes(Some(&key(2)), &sealed).is_err());
        assert!(open_bytes(None, &sealed).is_err());
        assert_eq!(
            open_bytes(None, &seal_bytes(None, &plan)).expect("clear"),
            plan
        );
        assert!(open_bytes(None, &[]).is_err());
    }

    #[test]
    fn values_round_trip_and_only_sensitive_ones_are_sealed() {
        let k = key(7);
        let mut p =
            json!({"password": "hunter22-long", "name": "x", "obj": {"a": 1}, "nothing": null})
                .as_object()
                .cloned()
                .expect("object");
        seal(&mut p, &["password", "obj", "nothing"], Some(&k)).expect("sealed");
        assert!(is_encrypted(&p["password"]) && is_encrypted(&p["obj"]));
        assert_eq!(p["name"], "x");
        assert_eq!(p["nothing"], Value::Null);
        assert!(!Value::Object(p.clone()).to_string().contains("hunter22"));
        // Deterministic: the same value seals to the same text.
        let mut again = json!({"password": "hunter22-long"})
            .as_object()
            .cloned()
            .expect("object");
        seal(&mut again, &["password"], Some(&k)).expect("sealed");
        assert_eq!(again["password"], p["password"]);
        open(&mut p, Some(&k)).expect("opened");
        assert_eq!(p["password"], "hunter22-long");
        assert_eq!(p["obj"], json!({"a": 1}));
    }

    #[test]
    fn no_key_refuses_and_a_wrong_key_fails() {
        let mut p = json!({"password": "pw-123456"})
            .as_object()
            .cloned()
            .expect("object");
        assert_eq!(
            seal(&mut p, &["password"], None),
            Err(vec!["password".to_string()])
        );
        assert!(
            seal(
                &mut json!({"name": "x"}).as_object().cloned().expect("object"),
                &["password"],
                None
            )
            .is_ok()
        );
        seal(&mut p, &["password"], Some(&key(1))).expect("sealed");
        let mut tampered = p.clone();
        assert_eq!(
            open(&mut tampered, Some(&key(2))),
            Err(SecretsError::Decrypt)
        );
        assert_eq!(open(&mut p.clone(), None), Err(SecretsError::Decrypt));
        assert!(SecretKey::from_base64("c2hvcnQ=").is_err(), "too short");
        assert!(SecretKey::from_base64("!!!").is_err());
    }

    #[test]
    fn a_generated_key_is_private_and_stable_and_a_configured_one_wins() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Settings::default();
        settings.paths.data_dir = dir.path().to_path_buf();
        assert!(
            SecretKey::for_daemon(&settings, false)
                .expect("ok")
                .is_none(),
            "an external database gets no invented key"
        );
        let first = SecretKey::for_daemon(&settings, true)
            .expect("generated")
            .expect("key");
        let path = dir.path().join(GENERATED_KEY_FILE);
        let mode = std::fs::metadata(&path)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = SecretKey::for_daemon(&settings, true)
            .expect("read")
            .expect("key");
        let mut a = json!({"p": "same-value"}).as_object().cloned().expect("o");
        let mut b = a.clone();
        seal(&mut a, &["p"], Some(&first)).expect("sealed");
        seal(&mut b, &["p"], Some(&second)).expect("sealed");
        assert_eq!(a, b, "the second start reads the same key");

        settings.secrets.key = B64.encode([9u8; 32]);
        let configured = SecretKey::for_daemon(&settings, true)
            .expect("ok")
            .expect("key");
        let mut c = json!({"p": "same-value"}).as_object().cloned().expect("o");
        seal(&mut c, &["p"], Some(&configured)).expect("sealed");
        assert_ne!(a, c, "the configured key wins");

        settings.secrets.key.clear();
        settings.secrets.key_file = dir.path().join("missing.key").display().to_string();
        assert!(
            SecretKey::for_daemon(&settings, true).is_err(),
            "a missing configured key file is an error, not a new key"
        );
    }
}
