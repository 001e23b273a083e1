//! `cargo run --example bicep_build -- FILE.bicep [ROOT]`: prints the ARM template the built-in
//! compiler makes of a Bicep file (like `bicep build --stdout`). Modules and `load*` targets
//! are read from ROOT (default: the file's folder), never from outside it.

use std::path::{Path, PathBuf};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: bicep_build FILE.bicep [ROOT]");
        std::process::exit(2);
    };
    let file = PathBuf::from(&path);
    let root = match args.next() {
        Some(r) => PathBuf::from(r),
        None => file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    };
    let (root, file) = match (root.canonicalize(), file.canonicalize()) {
        (Ok(r), Ok(f)) => (r, f),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    match multicloud::bicep::compile_file(&root, &file) {
        Ok(t) => println!(
            "{}",
            serde_json::to_string_pretty(&t).expect("a template serializes")
        ),
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    }
}
