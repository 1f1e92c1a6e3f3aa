//! Prints the manifest of a model file or directory as JSON.
//!
//! ```text
//! cargo run --example inspect -- testdata/mlp.onnx
//! ```
//!
//! The format is detected by content; the signature, the files with their sha256, and what
//! the format records about itself come from the model. Anything that cannot be read exits
//! with status 1 and a one-line reason on stderr.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use mlops::core::ModelManifest;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(path), None) = (args.next(), args.next()) else {
        eprintln!("usage: inspect PATH (a model file or directory)");
        return ExitCode::from(2);
    };
    let path = PathBuf::from(path);
    let manifest = match ModelManifest::from_path(&path) {
        Ok(manifest) => manifest,
        Err(e) => {
            eprintln!("inspect: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = match serde_json::to_string_pretty(&manifest) {
        Ok(json) => json,
        Err(e) => {
            eprintln!("inspect: cannot encode the manifest: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{json}").is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
