//! Registry (`br:`) and template-spec (`ts:`) module references, and where the official Bicep
//! CLI keeps what `bicep restore` downloaded for them (its local module cache, `~/.bicep`):
//!
//! - `br:<registry>/<repository>:<tag>` (or `@sha256:<digest>`):
//!   `br/<registry, lower case, ':' as '$'>/<repository, '/' as '$'>/<tag, encoded>/main.json`,
//!   the tag followed by `$` and the hexadecimal mask of its upper-case letters (so that tags
//!   differing in case only do not collide on case-insensitive file systems), a digest as
//!   `sha256#<hex>`;
//! - `br/public:<path>:<tag>`: the built-in alias, `br:mcr.microsoft.com/bicep/<path>:<tag>`
//!   (other aliases come from a `bicepconfig.json`, which this compiler does not read);
//! - `ts:<subscription>/<resource group>/<name>:<version>`:
//!   `ts/<subscription>/<resource group>/<name>/<version>/main.json`, all in lower case; the file
//!   is the template spec version (`id`, `properties.mainTemplate`).
//!
//! Every part is checked against the official compiler's rules for it first, which also keeps a
//! reference from naming anything outside the cache (no part is `.`, `..` or holds a `/`).

/// What kind of module the cached `main.json` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An ARM template, embedded as it is.
    Registry,
    /// A template spec version: the module links to its `id`.
    TemplateSpec,
}

/// The cache path (relative to the cache root) of the module `reference` names, if it is a
/// registry or template-spec reference: Some(Err) for one that is malformed or not supported.
pub fn cache_path(reference: &str) -> Option<Result<(Kind, String), String>> {
    if let Some(rest) = reference.strip_prefix("br:") {
        return Some(registry(rest).map(|p| (Kind::Registry, p)));
    }
    if let Some(rest) = reference.strip_prefix("br/") {
        let Some((alias, rest)) = rest.split_once(':') else {
            return Some(Err(
                "a registry module alias is written 'br/<alias>:<path>:<tag>'".into(),
            ));
        };
        if alias != "public" {
            return Some(Err(format!(
                "the module alias 'br/{alias}' would come from a bicepconfig.json, which the built-in Bicep compiler does not read: write the module as 'br:<registry>/<repository>:<tag>'"
            )));
        }
        return Some(
            registry(&format!("mcr.microsoft.com/bicep/{rest}")).map(|p| (Kind::Registry, p)),
        );
    }
    if let Some(rest) = reference.strip_prefix("ts:") {
        return Some(template_spec(rest).map(|p| (Kind::TemplateSpec, p)));
    }
    if let Some(rest) = reference.strip_prefix("ts/") {
        let alias = rest.split(':').next().unwrap_or(rest);
        return Some(Err(format!(
            "the module alias 'ts/{alias}' would come from a bicepconfig.json, which the built-in Bicep compiler does not read: write the module as 'ts:<subscription>/<resource group>/<name>:<version>'"
        )));
    }
    None
}

const MAX_REGISTRY_LENGTH: usize = 255;
const MAX_REPOSITORY_LENGTH: usize = 255;
const MAX_TAG_LENGTH: usize = 128;

/// `[a-z0-9]+([._-][a-z0-9]+)*`
fn is_namespace_segment(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.windows(2).all(|w| alnum(&w[0]) || alnum(&w[1]))
        && b.iter()
            .all(|c| alnum(c) || matches!(c, b'.' | b'_' | b'-'))
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    b.first()
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && b.len() <= MAX_TAG_LENGTH
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// A host name or address with an optional port (what a registry is here).
fn is_registry(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !l.starts_with('-')
        })
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()))
}

fn registry(unqualified: &str) -> Result<String, String> {
    let bad =
        |why: &str| format!("'br:{unqualified}' is not a valid registry module reference: {why}");
    let Some((registry, path)) = unqualified.split_once('/') else {
        return Err(bad("it names no repository"));
    };
    if registry.len() > MAX_REGISTRY_LENGTH || !is_registry(registry) {
        return Err(bad(&format!(
            "the registry '{registry}' is not a host name with an optional port"
        )));
    }
    let (namespaces, last) = match path.rsplit_once('/') {
        Some((n, l)) => (Some(n), l),
        None => (None, path),
    };
    let Some(i) = last.find([':', '@']) else {
        return Err(bad("it names no tag (':<tag>') or digest ('@sha256:...')"));
    };
    let (name, version) = (&last[..i], &last[i + 1..]);
    let segments: Vec<&str> = namespaces
        .map(|n| n.split('/').collect())
        .unwrap_or_default();
    for s in segments.iter().chain([&name]) {
        if !is_namespace_segment(s) {
            return Err(bad(&format!(
                "'{s}' is not a repository path segment (lower-case letters and digits, separated by '.', '_' or '-')"
            )));
        }
    }
    let repository = segments
        .iter()
        .chain([&name])
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    if repository.len() > MAX_REPOSITORY_LENGTH {
        return Err(bad("the repository is longer than 255 characters"));
    }
    let version = if last.as_bytes()[i] == b':' {
        if !is_tag(version) {
            return Err(bad(&format!("'{version}' is not a valid tag")));
        }
        encode_tag(version)
    } else {
        let hex = version.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return Err(bad(&format!("'{version}' is not a sha256 digest")));
        }
        format!("sha256#{hex}")
    };
    Ok(format!(
        "br/{}/{}/{version}/main.json",
        registry.replace(':', "$").to_ascii_lowercase(),
        repository.replace('/', "$")
    ))
}

/// The tag, `$`, and the hexadecimal bit mask of its upper-case letters (bit i for character i,
/// 64 bits a word, the high word first; no leading zeros), as the official CLI names its folder.
fn encode_tag(tag: &str) -> String {
    let mut mask = [0u64; MAX_TAG_LENGTH.div_ceil(64)];
    for (i, c) in tag.bytes().enumerate() {
        if c.is_ascii_uppercase() {
            mask[i / 64] |= 1 << (i % 64);
        }
    }
    let mut out = format!("{tag}$");
    let mut leading = false;
    for word in mask.iter().rev() {
        if leading {
            out.push_str(&format!("{word:016x}"));
        } else if *word != 0 {
            out.push_str(&format!("{word:x}"));
            leading = true;
        }
    }
    out
}

/// A template spec's name or version: `[-\w.()]{0,89}[-\w()]`.
fn is_resource_name(s: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '(' | ')');
    s.chars().count() <= 90
        && s.chars().last().is_some_and(word)
        && s.chars().all(|c| word(c) || c == '.')
}

fn template_spec(unqualified: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!(
            "'ts:{unqualified}' is not a valid template spec reference ('ts:<subscription>/<resource group>/<name>:<version>'): {why}"
        )
    };
    let parts: Vec<&str> = unqualified.split('/').collect();
    let [sub, rg, last] = parts[..] else {
        return Err(bad("it does not have three parts"));
    };
    let Some((name, version)) = last.split_once(':') else {
        return Err(bad("it names no version"));
    };
    let groups: Vec<usize> = sub.split('-').map(str::len).collect();
    if groups != [8, 4, 4, 4, 12] || !sub.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()) {
        return Err(bad(&format!("'{sub}' is not a subscription id")));
    }
    if rg.is_empty()
        || rg.chars().count() > 90
        || rg.ends_with('.')
        || !rg
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
    {
        return Err(bad(&format!("'{rg}' is not a resource group name")));
    }
    if !is_resource_name(name) {
        return Err(bad(&format!("'{name}' is not a template spec name")));
    }
    if !is_resource_name(version) {
        return Err(bad(&format!("'{version}' is not a template spec version")));
    }
    Ok(format!("ts/{sub}/{rg}/{name}/{version}/main.json").to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(r: &str) -> String {
        match cache_path(r) {
            Some(Ok((_, p))) => p,
            other => panic!("{r}: {other:?}"),
        }
    }

    #[test]
    fn references_map_to_the_official_cache_layout() {
        assert_eq!(
            path("br:myRegistry.azurecr.io:443/bicep/modules/storage.v2:v1.0-Beta"),
            "br/myregistry.azurecr.io$443/bicep$modules$storage.v2/v1.0-Beta$20/main.json"
        );
        assert_eq!(
            path("br/public:deployment-scripts/import-acr:1.0.1"),
            "br/mcr.microsoft.com/bicep$deployment-scripts$import-acr/1.0.1$/main.json"
        );
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            path(&format!("br:r.io/m@{digest}")),
            format!("br/r.io/m/sha256#{}/main.json", "ab".repeat(32))
        );
        assert_eq!(
            path("ts:00000000-0000-0000-0000-00000000000A/My-RG/Spec.Name:V1"),
            "ts/00000000-0000-0000-0000-00000000000a/my-rg/spec.name/v1/main.json"
        );
        assert!(cache_path("./m.bicep").is_none());
        assert!(cache_path("m.json").is_none());
    }

    #[test]
    fn tags_encode_their_casing() {
        assert_eq!(encode_tag("v1"), "v1$");
        assert_eq!(encode_tag("V1"), "V1$1");
        assert_eq!(encode_tag("aBcD"), "aBcD$a");
        let long = format!("{}A", "a".repeat(64));
        assert_eq!(encode_tag(&long), format!("{long}$10000000000000000"));
        let both = format!("A{}A", "a".repeat(63));
        assert_eq!(encode_tag(&both), format!("{both}$10000000000000001"));
    }

    #[test]
    fn malformed_or_escaping_references_are_errors() {
        for r in [
            "br:r.io/../x:1",
            "br:r.io/a/..:1",
            "br:../a:1",
            "br:r.io/a",
            "br:r.io/A:1",
            "br:r.io/a:..",
            "br:r.io/a:.x",
            "br:r.io/a:x/y",
            "br:r.io/a@sha256:00",
            "br:/a:1",
            "br:user@r.io/a:1",
            "br/custom:a:1",
            "br/public",
            "ts/alias:x",
            "ts:sub/rg/name:v",
            "ts:00000000-0000-0000-0000-000000000000/../n:v",
            "ts:00000000-0000-0000-0000-000000000000/rg/..:v",
            "ts:00000000-0000-0000-0000-000000000000/rg/n:..",
            "ts:00000000-0000-0000-0000-000000000000/rg/n",
            "ts:00000000-0000-0000-0000-000000000000/rg/a/n:v",
        ] {
            assert!(matches!(cache_path(r), Some(Err(_))), "{r}");
        }
        let Some(Err(e)) = cache_path("br/custom:a:1") else {
            panic!("an alias");
        };
        assert!(
            e.contains("'br/custom'") && e.contains("bicepconfig.json"),
            "{e}"
        );
    }
}
