//! `cargo run --example bicep_build -- FILE.bicep`: prints the ARM template the built-in
//! compiler makes of a Bicep file (like `bicep build --stdout`).

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: bicep_build FILE.bicep");
        std::process::exit(2);
    };
    let source = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    match multicloud::bicep::compile(&source) {
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
