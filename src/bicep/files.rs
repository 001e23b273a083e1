//! The other files a template reads: local modules (`module m './m.bicep'`, `.json` ARM
//! templates) and the targets of the `load*` functions. Paths are resolved by the compiler
//! against the file that names them, as '/'-separated paths relative to a root folder (the
//! templates folder); a path leaving the root (`../../etc/passwd`, an absolute path, a symlink
//! pointing out) is an error. Where the bytes come from is a [`FileLoader`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use serde_json::Value;

use super::CompileError;
use super::registry::Kind;
use super::scope::Scope;
use super::syntax::{Stmt, StmtKind, unsupported};

/// How deeply modules may nest (a.bicep → b.bicep → ...); a cycle is reported as one.
pub const MAX_MODULE_DEPTH: usize = 16;

/// How many templates one compilation may embed in all (a module used twice is embedded twice,
/// with everything it embeds).
pub const MAX_EMBEDDED_TEMPLATES: usize = 2000;

/// The largest file a template may read.
pub const MAX_FILE_SIZE: u64 = 4 * 1024 * 1024;

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The caller compiles without a folder: no other file can be read.
    NoFolder,
    /// The path resolves outside the root folder (through `..`, or a symlink).
    OutsideRoot,
    NotFound,
    /// Anything else (too large, unreadable), in words.
    Other(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::NoFolder => write!(f, "no templates folder to read from"),
            LoadError::OutsideRoot => write!(f, "outside the templates folder"),
            LoadError::NotFound => write!(f, "no such file"),
            LoadError::Other(e) => write!(f, "{e}"),
        }
    }
}

/// Where a template's other files come from. `path` is relative to the root, '/'-separated,
/// normalized (no `.`, no `..`, not absolute): the compiler resolves and checks it first.
pub trait FileLoader {
    fn load(&self, path: &str) -> Result<Vec<u8>, LoadError>;

    /// A file of the local module cache, where the official CLI keeps the registry (`br:`) and
    /// template-spec (`ts:`) modules `bicep restore` downloaded (`~/.bicep`); `path` is relative
    /// to its root, normalized (`br/<registry>/<repository>/<tag>/main.json`, see
    /// `registry.rs`). By default there is none ([`LoadError::NoFolder`]); see
    /// [`WithModuleCache`].
    fn load_cached(&self, _path: &str) -> Result<Vec<u8>, LoadError> {
        Err(LoadError::NoFolder)
    }
}

/// The files of `files`, with the module cache `cache` (a [`Folder`] holding a copy of a
/// `~/.bicep` filled by `bicep restore`: read only, nothing outside it).
pub struct WithModuleCache<'a> {
    pub files: &'a dyn FileLoader,
    pub cache: &'a dyn FileLoader,
}

impl FileLoader for WithModuleCache<'_> {
    fn load(&self, path: &str) -> Result<Vec<u8>, LoadError> {
        self.files.load(path)
    }

    fn load_cached(&self, path: &str) -> Result<Vec<u8>, LoadError> {
        self.cache.load(path)
    }
}

/// No files: what `compile(src)` uses. Modules and `load*` functions are rejected.
pub struct NoFiles;

impl FileLoader for NoFiles {
    fn load(&self, _path: &str) -> Result<Vec<u8>, LoadError> {
        Err(LoadError::NoFolder)
    }
}

/// Files in memory, by normalized path (for tests and for callers holding sources).
impl FileLoader for HashMap<String, String> {
    fn load(&self, path: &str) -> Result<Vec<u8>, LoadError> {
        self.get(path)
            .map(|s| s.as_bytes().to_vec())
            .ok_or(LoadError::NotFound)
    }
}

/// The files under a folder on disk. A file whose real path (symlinks resolved) is not inside
/// the folder's real path is refused.
#[derive(Debug, Clone)]
pub struct Folder {
    root: PathBuf,
}

impl Folder {
    pub fn new(root: impl Into<PathBuf>) -> Folder {
        Folder { root: root.into() }
    }
}

impl FileLoader for Folder {
    fn load(&self, path: &str) -> Result<Vec<u8>, LoadError> {
        if normalize("", path).as_deref() != Ok(path) {
            return Err(LoadError::OutsideRoot);
        }
        let root = self
            .root
            .canonicalize()
            .map_err(|e| LoadError::Other(format!("the templates folder: {e}")))?;
        let real = match root.join(path).canonicalize() {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(LoadError::NotFound),
            Err(e) => return Err(LoadError::Other(e.to_string())),
        };
        if !real.starts_with(&root) {
            return Err(LoadError::OutsideRoot);
        }
        let meta = std::fs::metadata(&real).map_err(|e| LoadError::Other(e.to_string()))?;
        if !meta.is_file() {
            return Err(LoadError::NotFound);
        }
        if meta.len() > MAX_FILE_SIZE {
            return Err(LoadError::Other(format!(
                "larger than {} MiB",
                MAX_FILE_SIZE / 1024 / 1024
            )));
        }
        std::fs::read(&real).map_err(|e| LoadError::Other(e.to_string()))
    }
}

/// `rel` as written in the file at `from` (both relative to the root): the normalized path of
/// the file it names, or why it names none.
pub fn resolve(from: &str, rel: &str) -> Result<String, String> {
    let dir = match from.rfind('/') {
        Some(i) => &from[..i],
        None => "",
    };
    normalize(dir, rel)
}

fn normalize(dir: &str, rel: &str) -> Result<String, String> {
    if rel.is_empty() {
        return Err("an empty path".into());
    }
    if rel.starts_with('/') || rel.contains('\\') || rel.contains(':') || rel.contains('\0') {
        return Err(format!(
            "'{rel}' is not a relative path with '/' separators inside the templates folder"
        ));
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("'{rel}' leads outside the templates folder"));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!("'{rel}' names no file"));
    }
    Ok(parts.join("/"))
}

/// The root-relative path of `file` under `root` (for `compile_file`).
pub fn relative_to(root: &Path, file: &Path) -> Option<String> {
    let rel = if file.is_absolute() {
        file.strip_prefix(root).ok()?
    } else {
        file
    };
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// A module's compiled template and what its callers may pass and read.
#[derive(Debug)]
pub struct ModuleTemplate {
    pub template: Value,
    /// Parameter names, and whether each must be given (no default).
    pub params: Vec<(String, bool)>,
    /// Output names, and whether each is secure.
    pub outputs: Vec<(String, bool)>,
    /// How many templates this one embeds, itself included.
    pub weight: usize,
    /// What it deploys to (from its `$schema`).
    pub scope: Scope,
    /// A template spec's id: the deployment links to it (`templateLink`) instead of embedding
    /// the template.
    pub link: Option<String>,
}

impl ModuleTemplate {
    fn from_template(template: Value, weight: usize) -> Result<ModuleTemplate, String> {
        let Value::Object(t) = &template else {
            return Err("the template is not a JSON object".into());
        };
        // The official compiler reads a module's scope from its schema, and refuses a module
        // whose schema names none.
        let scope = t
            .get("$schema")
            .and_then(Value::as_str)
            .and_then(Scope::from_schema)
            .ok_or("the template's $schema names no deployment template schema")?;
        let mut params = Vec::new();
        match t.get("parameters") {
            None => {}
            Some(Value::Object(ps)) => {
                for (name, p) in ps {
                    let required = p.get("defaultValue").is_none()
                        && p.get("nullable") != Some(&Value::Bool(true));
                    params.push((name.clone(), required));
                }
            }
            Some(_) => return Err("the template's parameters are not an object".into()),
        }
        let mut outputs = Vec::new();
        match t.get("outputs") {
            None => {}
            Some(Value::Object(os)) => {
                for (name, o) in os {
                    let secure = o.get("type").and_then(Value::as_str).is_some_and(|t| {
                        t.eq_ignore_ascii_case("securestring")
                            || t.eq_ignore_ascii_case("secureobject")
                    });
                    outputs.push((name.clone(), secure));
                }
            }
            Some(_) => return Err("the template's outputs are not an object".into()),
        }
        Ok(ModuleTemplate {
            template,
            params,
            outputs,
            weight,
            scope,
            link: None,
        })
    }

    /// How many templates `template` embeds (nested `template` properties), itself included.
    fn count_embedded(template: &Value) -> usize {
        let mut n = 1;
        let mut stack = vec![template];
        while let Some(v) = stack.pop() {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        if k == "template" && x.is_object() {
                            n += 1;
                        }
                        stack.push(x);
                    }
                }
                Value::Array(a) => stack.extend(a),
                _ => {}
            }
        }
        n
    }
}

/// One compilation: the loader, the files being compiled (to find cycles) and the modules
/// compiled so far.
pub struct Context<'l> {
    loader: &'l dyn FileLoader,
    stack: RefCell<Vec<String>>,
    cache: RefCell<HashMap<String, Rc<ModuleTemplate>>>,
    /// Every template (modules included) as a `languageVersion` 2.0 one, as the official
    /// compiler writes them with its `symbolicNameCodegen` feature.
    pub symbolic_names: bool,
}

/// The modules of one file, by symbolic name.
pub type Modules = HashMap<String, Rc<ModuleTemplate>>;

impl<'l> Context<'l> {
    pub fn new(loader: &'l dyn FileLoader) -> Context<'l> {
        Context {
            loader,
            stack: RefCell::new(Vec::new()),
            cache: RefCell::new(HashMap::new()),
            symbolic_names: false,
        }
    }

    /// Compiles the file at `path` (root-relative) with source `src`.
    pub fn compile(&self, src: &str, path: &str) -> Result<Value, CompileError> {
        self.stack.borrow_mut().push(path.to_string());
        let result = self.compile_unit(src, path);
        self.stack.borrow_mut().pop();
        result
    }

    fn compile_unit(&self, src: &str, path: &str) -> Result<Value, CompileError> {
        let tokens = super::lexer::tokenize(src)?;
        let stmts = super::syntax::parse(src, tokens)?;
        let modules = self.modules(src, path, &stmts)?;
        let files = super::emit::Files {
            context: self,
            path,
        };
        super::emit::emit(src, &stmts, &modules, &files)
    }

    /// The modules `stmts` declare, compiled; the total embedded stays bounded.
    fn modules(&self, src: &str, path: &str, stmts: &[Stmt]) -> Result<Modules, CompileError> {
        let mut out = Modules::new();
        let mut weight = 1;
        for s in stmts {
            let StmtKind::Module {
                name,
                path: rel,
                path_at,
                ..
            } = &s.kind
            else {
                continue;
            };
            let m = self.module(src, path, rel, *path_at)?;
            weight += m.weight;
            if weight > MAX_EMBEDDED_TEMPLATES {
                return Err(CompileError::at(
                    src,
                    s.at,
                    format!(
                        "the modules embed more than {MAX_EMBEDDED_TEMPLATES} templates in all"
                    ),
                ));
            }
            out.insert(name.clone(), m);
        }
        Ok(out)
    }

    fn module(
        &self,
        src: &str,
        from: &str,
        rel: &str,
        at: usize,
    ) -> Result<Rc<ModuleTemplate>, CompileError> {
        let lower = rel.to_ascii_lowercase();
        let err = |msg: String| CompileError::at(src, at, msg);
        if let Some(external) = super::registry::cache_path(rel) {
            let (kind, path) = external.map_err(|e| err(format!("module {e}")))?;
            return self.cached_module(src, rel, at, kind, path);
        }
        let path = resolve(from, rel).map_err(|e| err(format!("module path: {e}")))?;
        let is_json = lower.ends_with(".json") || lower.ends_with(".jsonc");
        if !is_json && !lower.ends_with(".bicep") {
            return Err(err(format!(
                "module '{rel}': a local module is a .bicep file or a .json ARM template"
            )));
        }
        {
            let stack = self.stack.borrow();
            if let Some(i) = stack.iter().position(|p| *p == path) {
                let cycle: Vec<&str> = stack[i..]
                    .iter()
                    .map(String::as_str)
                    .chain([path.as_str()])
                    .collect();
                return Err(err(format!(
                    "module '{rel}' includes itself: {}",
                    cycle.join(" -> ")
                )));
            }
            if stack.len() >= MAX_MODULE_DEPTH {
                return Err(err(format!(
                    "modules nested more than {MAX_MODULE_DEPTH} levels deep"
                )));
            }
        }
        if let Some(m) = self.cache.borrow().get(&path) {
            return Ok(m.clone());
        }
        let bytes = self.loader.load(&path).map_err(|e| match e {
            LoadError::NoFolder => unsupported(
                src,
                at,
                "modules (this caller compiles without a templates folder)",
            ),
            LoadError::OutsideRoot => {
                err(format!("module '{rel}' leads outside the templates folder"))
            }
            LoadError::NotFound => err(format!("module '{rel}': no such file ({path})")),
            LoadError::Other(e) => err(format!("module '{rel}' ({path}): {e}")),
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| err(format!("module '{rel}' ({path}) is not UTF-8 text")))?;
        let text = text.trim_start_matches('\u{feff}');
        let m = if is_json {
            let template: Value = serde_json::from_str(text)
                .map_err(|e| err(format!("module '{rel}' ({path}) is not valid JSON: {e}")))?;
            let weight = ModuleTemplate::count_embedded(&template);
            ModuleTemplate::from_template(template, weight)
        } else {
            let template = self
                .compile(text, &path)
                .map_err(|e| err(format!("in module '{rel}' ({path}), {e}")))?;
            let weight = ModuleTemplate::count_embedded(&template);
            ModuleTemplate::from_template(template, weight)
        }
        .map_err(|e| err(format!("module '{rel}' ({path}): {e}")))?;
        if m.weight > MAX_EMBEDDED_TEMPLATES {
            return Err(err(format!(
                "module '{rel}' embeds more than {MAX_EMBEDDED_TEMPLATES} templates in all"
            )));
        }
        let m = Rc::new(m);
        self.cache.borrow_mut().insert(path, m.clone());
        Ok(m)
    }

    /// A registry or template-spec module, from the module cache.
    fn cached_module(
        &self,
        src: &str,
        rel: &str,
        at: usize,
        kind: Kind,
        path: String,
    ) -> Result<Rc<ModuleTemplate>, CompileError> {
        let err = |msg: String| CompileError::at(src, at, msg);
        let what = match kind {
            Kind::Registry => "registry module",
            Kind::TemplateSpec => "template spec module",
        };
        let key = format!("cache:{path}");
        if let Some(m) = self.cache.borrow().get(&key) {
            return Ok(m.clone());
        }
        let bytes = self.loader.load_cached(&path).map_err(|e| match e {
            LoadError::NoFolder => err(format!(
                "{what} '{rel}' needs the local module cache of the Bicep CLI, and none is configured (set azure.bicep_module_cache to a copy of a ~/.bicep folder filled by `bicep restore`)"
            )),
            LoadError::NotFound => err(format!(
                "{what} '{rel}' is not in the local module cache (azure.bicep_module_cache): no {path} (run `bicep restore` on the template and copy ~/.bicep)"
            )),
            LoadError::OutsideRoot => err(format!(
                "{what} '{rel}': {path} leads outside the local module cache"
            )),
            LoadError::Other(e) => err(format!("{what} '{rel}' ({path} in the module cache): {e}")),
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| err(format!("{what} '{rel}': {path} is not UTF-8 text")))?;
        let cached: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
            .map_err(|e| err(format!("{what} '{rel}': {path} is not valid JSON: {e}")))?;
        let m = match kind {
            Kind::Registry => {
                let weight = ModuleTemplate::count_embedded(&cached);
                ModuleTemplate::from_template(cached, weight)
            }
            // A template spec version: the deployment links to its id; the parameters, outputs
            // and scope are its main template's.
            Kind::TemplateSpec => {
                let id = cached.get("id").and_then(Value::as_str).map(str::to_string);
                match (id, cached.pointer("/properties/mainTemplate")) {
                    (Some(id), Some(main @ Value::Object(_))) => {
                        ModuleTemplate::from_template(main.clone(), 1).map(|m| ModuleTemplate {
                            link: Some(id),
                            ..m
                        })
                    }
                    _ => Err(
                        "not a template spec version (an 'id' and 'properties.mainTemplate')"
                            .into(),
                    ),
                }
            }
        }
        .map_err(|e| err(format!("{what} '{rel}' ({path} in the module cache): {e}")))?;
        if m.weight > MAX_EMBEDDED_TEMPLATES {
            return Err(err(format!(
                "{what} '{rel}' embeds more than {MAX_EMBEDDED_TEMPLATES} templates in all"
            )));
        }
        let m = Rc::new(m);
        self.cache.borrow_mut().insert(key, m.clone());
        Ok(m)
    }

    /// The bytes of the file `rel` names from the file at `from` (for the `load*` functions).
    pub fn load(&self, from: &str, rel: &str) -> Result<Vec<u8>, (bool, String)> {
        let path = resolve(from, rel).map_err(|e| (false, e))?;
        self.loader.load(&path).map_err(|e| match e {
            LoadError::NoFolder => (true, String::new()),
            LoadError::OutsideRoot => {
                (false, format!("'{rel}' leads outside the templates folder"))
            }
            LoadError::NotFound => (false, format!("'{rel}': no such file ({path})")),
            LoadError::Other(e) => (false, format!("'{rel}' ({path}): {e}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_the_root_only() {
        assert_eq!(resolve("main.bicep", "./m.bicep").as_deref(), Ok("m.bicep"));
        assert_eq!(
            resolve("a/b/main.bicep", "../c/./m.bicep").as_deref(),
            Ok("a/c/m.bicep")
        );
        assert_eq!(
            resolve("main.bicep", "x//y.json").as_deref(),
            Ok("x/y.json")
        );
        for bad in [
            "../m.bicep",
            "a/../../m.bicep",
            "/etc/passwd",
            "C:/x.bicep",
            "a\\b.bicep",
            "",
            ".",
        ] {
            assert!(resolve("main.bicep", bad).is_err(), "{bad}");
        }
        assert!(resolve("a/main.bicep", "../../etc/passwd").is_err());
    }

    #[test]
    fn a_folder_refuses_symlinks_out_of_it() {
        let dir = std::env::temp_dir().join(format!("bicep-files-{}", std::process::id()));
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(dir.join("secret.txt"), "secret").expect("write");
        std::fs::write(root.join("sub/in.txt"), "inside").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("out.txt")).expect("link");
        let f = Folder::new(&root);
        assert_eq!(f.load("sub/in.txt"), Ok(b"inside".to_vec()));
        assert_eq!(f.load("missing.txt"), Err(LoadError::NotFound));
        assert_eq!(f.load("../secret.txt"), Err(LoadError::OutsideRoot));
        assert_eq!(f.load("sub"), Err(LoadError::NotFound));
        #[cfg(unix)]
        assert_eq!(f.load("out.txt"), Err(LoadError::OutsideRoot));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
