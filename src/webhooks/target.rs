//! Which URLs may receive webhooks (SSRF protection): URL syntax, and the addresses a host may
//! resolve to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use awc::http::Uri;

/// Longest accepted webhook URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

const ALLOW_HINT: &str = "set webhooks.allow_private = true to allow it";

/// Why a webhook URL is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("webhook URL is too long ({0} bytes, at most {MAX_URL_LEN})")]
    TooLong(usize),
    #[error("webhook URL is not a valid URL: {0}")]
    Invalid(String),
    #[error("webhook URL must be absolute and start with http:// or https://")]
    NotAbsolute,
    #[error("webhook URL scheme must be http or https, not {0:?}")]
    Scheme(String),
    #[error("webhook URL has no host")]
    NoHost,
    #[error("webhook URL must not contain credentials (user:password@)")]
    UserInfo,
    #[error("webhook URL host {0:?} is not a valid host name or IP address")]
    InvalidHost(String),
    #[error("webhook URL port {0:?} is not valid")]
    InvalidPort(String),
    /// An IP-literal host in a forbidden range.
    #[error("webhook URL host {host} is a {reason} address; {ALLOW_HINT}")]
    Forbidden { host: String, reason: &'static str },
    /// A host name resolving to (at least) one forbidden address.
    #[error("webhook URL host {host} resolves to {addr}, a {reason} address; {ALLOW_HINT}")]
    ForbiddenResolved {
        host: String,
        addr: IpAddr,
        reason: &'static str,
    },
    #[error("webhook URL host {host} could not be resolved: {error}")]
    Unresolvable { host: String, error: String },
    #[error("webhook URL host {0} resolves to no address")]
    NoAddress(String),
}

impl TargetError {
    /// True for errors about the URL itself or a forbidden address (retrying will not help);
    /// false for DNS failures, which may be transient.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Self::Unresolvable { .. } | Self::NoAddress(_))
    }
}

/// The host of a webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    /// A lower-cased DNS name.
    Domain(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Domain(name) => f.write_str(name),
        }
    }
}

/// A syntactically valid webhook URL (see [`parse_target`]); its addresses are checked by
/// [`check_target`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    uri: Uri,
    https: bool,
    host: Host,
    port: u16,
}

impl Target {
    pub fn uri(&self) -> &Uri {
        &self.uri
    }
    pub fn is_https(&self) -> bool {
        self.https
    }
    pub fn host(&self) -> &Host {
        &self.host
    }
    /// The explicit port, or 80 / 443.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Parses a webhook URL: `http` or `https`, a host (name, IPv4, or bracketed IPv6), optional
/// port, no `user:password@`, at most [`MAX_URL_LEN`] bytes. Does not look at addresses.
pub fn parse_target(url: &str) -> Result<Target, TargetError> {
    if url.len() > MAX_URL_LEN {
        return Err(TargetError::TooLong(url.len()));
    }
    // Name a wrong scheme even when `Uri` would reject the rest (`file:///...`).
    if let Some((scheme, _)) = url.split_once("://") {
        let token = !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if token && !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(TargetError::Scheme(scheme.to_string()));
        }
    }
    if !url.contains("://") {
        return Err(TargetError::NotAbsolute);
    }
    let uri: Uri = url
        .parse()
        .map_err(|e: awc::http::uri::InvalidUri| TargetError::Invalid(e.to_string()))?;
    let https = match uri.scheme_str() {
        None => return Err(TargetError::NotAbsolute),
        Some(s) if s.eq_ignore_ascii_case("http") => false,
        Some(s) if s.eq_ignore_ascii_case("https") => true,
        Some(s) => return Err(TargetError::Scheme(s.to_string())),
    };
    let authority = uri.authority().ok_or(TargetError::NoHost)?;
    if authority.as_str().contains('@') {
        return Err(TargetError::UserInfo);
    }
    let raw_host = authority.host();
    if raw_host.is_empty() {
        return Err(TargetError::NoHost);
    }
    let host = parse_host(raw_host)?;
    // `Authority::port()` is `None` for an unparsable port (`:99999`), so read the text.
    let after_host = authority
        .as_str()
        .strip_prefix(raw_host)
        .unwrap_or_default();
    let port_text = after_host.strip_prefix(':');
    let port = match port_text {
        None => {
            if https {
                443
            } else {
                80
            }
        }
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(TargetError::InvalidPort(p.to_string())),
        },
    };
    Ok(Target {
        uri,
        https,
        host,
        port,
    })
}

fn parse_host(raw: &str) -> Result<Host, TargetError> {
    let invalid = || TargetError::InvalidHost(raw.to_string());
    if let Some(inner) = raw.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(invalid)?;
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| invalid());
    }
    if let Ok(ip) = raw.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    let name = raw.strip_suffix('.').unwrap_or(raw);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(invalid());
    }
    Ok(Host::Domain(raw.to_ascii_lowercase()))
}

/// Why webhooks must not be sent to `ip`, or `None` for a public unicast address. IPv6 addresses
/// embedding an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const TABLE: &[([u8; 4], u32, &str)] = &[
        ([169, 254, 169, 254], 32, "link-local (cloud metadata)"),
        ([255, 255, 255, 255], 32, "broadcast"),
        ([0, 0, 0, 0], 8, "unspecified"),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "shared (CGNAT)"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "reserved (IETF protocol assignments)"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "reserved (6to4 relay)"),
        ([192, 168, 0, 0], 16, "private"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved"),
    ];
    TABLE
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, reason)| *reason)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), ::ffff:0:a.b.c.d (SIIT),
    // 64:ff9b::a.b.c.d (NAT64).
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96)
        || in_v6(ip, [0; 8], 96)
        || in_v6(ip, [0, 0, 0, 0, 0xffff, 0, 0, 0], 96)
        || in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96)
    {
        return forbidden_v4(low32);
    }
    // 2002:AABB:CCDD::/48 (6to4) embeds AA.BB.CC.DD.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return forbidden_v4(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    const TABLE: &[([u16; 8], u32, &str)] = &[
        (
            [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254],
            128,
            "private (cloud metadata)",
        ),
        (
            [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
            48,
            "private (local NAT64)",
        ),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "reserved (discard)"),
        ([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48, "benchmarking"),
        (
            [0x2001, 0, 0, 0, 0, 0, 0, 0],
            23,
            "reserved (IETF protocol assignments)",
        ),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation"),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "private"),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
        // Anything outside global unicast 2000::/3.
        ([0x2000, 0, 0, 0, 0, 0, 0, 0], 3, ""),
    ];
    match TABLE
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
    {
        Some((_, _, "")) => None,
        Some((_, _, reason)) => Some(reason),
        None => Some("reserved"),
    }
}

/// The addresses to connect to for `target`, all checked unless `allow_private`. Host names are
/// resolved with the system resolver; if any address is forbidden the whole target is refused.
pub(crate) async fn resolve_target(
    target: &Target,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, TargetError> {
    let host_text = target.host.to_string();
    let name = match &target.host {
        Host::Ip(ip) => {
            if let Some(reason) = forbidden_reason(*ip).filter(|_| !allow_private) {
                return Err(TargetError::Forbidden {
                    host: host_text,
                    reason,
                });
            }
            return Ok(vec![SocketAddr::new(*ip, target.port)]);
        }
        Host::Domain(name) => name,
    };
    let resolved = tokio::net::lookup_host((name.as_str(), target.port))
        .await
        .map_err(|e| TargetError::Unresolvable {
            host: host_text.clone(),
            error: e.to_string(),
        })?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in resolved {
        if let Some(reason) = forbidden_reason(addr.ip()).filter(|_| !allow_private) {
            return Err(TargetError::ForbiddenResolved {
                host: host_text,
                addr: addr.ip(),
                reason,
            });
        }
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(TargetError::NoAddress(host_text));
    }
    Ok(addrs)
}

/// Checks that `target` may receive webhooks: an IP literal must not be forbidden, a host name
/// must resolve, and none of its addresses may be forbidden (unless `allow_private`).
pub async fn check_target(target: &Target, allow_private: bool) -> Result<(), TargetError> {
    resolve_target(target, allow_private).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_reason_table() {
        let cases: &[(&str, Option<&str>)] = &[
            // Public.
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("93.184.216.34", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.169.0.1", None),
            ("198.20.0.1", None),
            ("223.255.255.255", None),
            ("2606:4700::1111", None),
            ("2001:4860:4860::8888", None),
            ("2a00:1450:4001::200e", None),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::808:808", None),
            ("2002:808:808::1", None),
            // IPv4.
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("unspecified")),
            ("10.0.0.1", Some("private")),
            ("10.255.255.255", Some("private")),
            ("100.64.0.1", Some("shared (CGNAT)")),
            ("100.100.100.200", Some("shared (CGNAT)")),
            ("127.0.0.1", Some("loopback")),
            ("127.255.0.9", Some("loopback")),
            ("169.254.169.254", Some("link-local (cloud metadata)")),
            ("169.254.1.1", Some("link-local")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.0.0.170", Some("reserved (IETF protocol assignments)")),
            ("192.0.2.1", Some("documentation")),
            ("192.88.99.1", Some("reserved (6to4 relay)")),
            ("192.168.1.1", Some("private")),
            ("198.18.0.1", Some("benchmarking")),
            ("198.19.255.255", Some("benchmarking")),
            ("198.51.100.7", Some("documentation")),
            ("203.0.113.9", Some("documentation")),
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.250", Some("multicast")),
            ("240.0.0.1", Some("reserved")),
            ("255.255.255.254", Some("reserved")),
            ("255.255.255.255", Some("broadcast")),
            // IPv6.
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            ("fc00::1", Some("private")),
            ("fd12:3456::1", Some("private")),
            ("fd00:ec2::254", Some("private (cloud metadata)")),
            ("fe80::1", Some("link-local")),
            ("febf::1", Some("link-local")),
            ("fec0::1", Some("site-local")),
            ("ff02::1", Some("multicast")),
            ("ff05::2", Some("multicast")),
            ("2001:db8::1", Some("documentation")),
            ("3fff::1", Some("documentation")),
            ("2001:2::1", Some("benchmarking")),
            ("2001::1", Some("reserved (IETF protocol assignments)")),
            ("100::1", Some("reserved (discard)")),
            ("64:ff9b:1::a00:1", Some("private (local NAT64)")),
            ("4000::1", Some("reserved")),
            ("::2", Some("unspecified")),
            // IPv6 embedding IPv4.
            ("::ffff:127.0.0.1", Some("loopback")),
            (
                "::ffff:169.254.169.254",
                Some("link-local (cloud metadata)"),
            ),
            ("::ffff:10.1.2.3", Some("private")),
            ("::ffff:0.0.0.0", Some("unspecified")),
            ("::127.0.0.1", Some("loopback")),
            ("::ffff:0:192.168.0.1", Some("private")),
            ("64:ff9b::a00:1", Some("private")),
            ("64:ff9b::7f00:1", Some("loopback")),
            ("64:ff9b::a9fe:a9fe", Some("link-local (cloud metadata)")),
            ("2002:7f00:1::", Some("loopback")),
            ("2002:a9fe:a9fe::1", Some("link-local (cloud metadata)")),
            ("2002:c0a8:101::1", Some("private")),
        ];
        for (ip, want) in cases {
            let addr: IpAddr = ip.parse().expect(ip);
            assert_eq!(forbidden_reason(addr), *want, "{ip}");
        }
    }

    #[test]
    fn parse_accepts() {
        let t = parse_target("http://[::1]:8080/p").expect("ipv6 literal");
        assert_eq!(t.host(), &Host::Ip("::1".parse().expect("ip")));
        assert_eq!(t.port(), 8080);
        assert!(!t.is_https());
        assert_eq!(t.host().to_string(), "[::1]");

        let t = parse_target("https://Hooks.Example.com/a/b?x=1").expect("https");
        assert_eq!(t.host(), &Host::Domain("hooks.example.com".into()));
        assert_eq!(t.port(), 443);
        assert!(t.is_https());

        let t = parse_target("HTTP://203.0.113.5").expect("ipv4, no path");
        assert_eq!(t.port(), 80);
        assert_eq!(t.host(), &Host::Ip("203.0.113.5".parse().expect("ip")));

        let t = parse_target("http://my_host.local.:9000/").expect("underscore, trailing dot");
        assert_eq!(t.port(), 9000);
    }

    #[test]
    fn parse_rejects() {
        use TargetError as E;
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        let cases: Vec<(&str, E)> = vec![
            ("ftp://example.com/", E::Scheme("ftp".into())),
            ("file:///etc/passwd", E::Scheme("file".into())),
            ("example.com/hook", E::NotAbsolute),
            ("/hook", E::NotAbsolute),
            ("http://user:pass@example.com/", E::UserInfo),
            ("http://user@example.com/", E::UserInfo),
            ("http://:80/", E::NoHost),
            ("http://[::1/", E::Invalid(String::new())),
            ("http://[zz::1]/", E::InvalidHost("[zz::1]".into())),
            ("http://exa%41mple.com/", E::Invalid(String::new())),
            (
                "http://exa$mple.com/",
                E::InvalidHost("exa$mple.com".into()),
            ),
            ("http://a..b/", E::InvalidHost("a..b".into())),
            ("http://example.com:0/", E::InvalidPort("0".into())),
            ("http://example.com:/", E::InvalidPort(String::new())),
            ("http://example.com:99999/", E::InvalidPort("99999".into())),
            ("http://example.com:+80/", E::InvalidPort("+80".into())),
            ("http://[::1]:65536/", E::InvalidPort("65536".into())),
            ("", E::NotAbsolute),
            ("not a url", E::NotAbsolute),
            ("http://not a url/", E::Invalid(String::new())),
        ];
        let mut wrong = Vec::new();
        for (url, want) in cases {
            let got = parse_target(url);
            match (&got, &want) {
                (Err(E::Invalid(_)), E::Invalid(_)) => {}
                (Err(got), want) if got == want => {}
                _ => wrong.push(format!("{url}: got {got:?}, want {want:?}")),
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        assert_eq!(parse_target(&long), Err(E::TooLong(long.len())));
        let ok = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN - 20));
        assert_eq!(ok.len(), MAX_URL_LEN);
        assert!(parse_target(&ok).is_ok());
        // No host at all.
        assert!(parse_target("http:///x").is_err());
        assert!(parse_target("http://").is_err());
    }

    #[test]
    fn error_messages() {
        let e = TargetError::Forbidden {
            host: "127.0.0.1".into(),
            reason: "loopback",
        };
        assert_eq!(
            e.to_string(),
            "webhook URL host 127.0.0.1 is a loopback address; \
             set webhooks.allow_private = true to allow it"
        );
        assert!(e.is_permanent());
        let e = TargetError::NoAddress("x.example".into());
        assert!(!e.is_permanent());
    }

    #[actix_rt::test]
    async fn check_target_localhost() {
        let t = parse_target("http://127.0.0.1:9/").expect("url");
        let err = check_target(&t, false).await.expect_err("loopback refused");
        assert_eq!(
            err,
            TargetError::Forbidden {
                host: "127.0.0.1".into(),
                reason: "loopback"
            }
        );
        check_target(&t, true)
            .await
            .expect("allowed with allow_private");

        let t = parse_target("http://localhost:9/").expect("url");
        let err = check_target(&t, false)
            .await
            .expect_err("localhost refused");
        assert!(
            matches!(&err, TargetError::ForbiddenResolved { host, reason: "loopback", .. } if host == "localhost"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("webhook URL host localhost resolves to"),
            "{err}"
        );
        check_target(&t, true)
            .await
            .expect("allowed with allow_private");

        let t = parse_target("http://[::1]:9/").expect("url");
        assert!(check_target(&t, false).await.is_err());
        let t = parse_target("http://169.254.169.254/latest/meta-data/").expect("url");
        let err = check_target(&t, false).await.expect_err("metadata refused");
        assert!(
            err.to_string().contains("link-local (cloud metadata)"),
            "{err}"
        );
    }
}
