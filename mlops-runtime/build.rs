//! Provides the ONNX Runtime shared library for the `ort` feature, so that `cargo run`,
//! `cargo test` and `cargo bench` work on a fresh machine with nothing fetched by hand.
//!
//! The library comes from the pinned `onnxruntime` wheel on PyPI (it carries the C API
//! library itself), fetched with `pip download`, and is accepted only with the pinned
//! sha256. It is cached under the target directory. `ORT_DYLIB_PATH` set at build time
//! skips all of this; set at run time it overrides the compiled-in path. Without Python or
//! a network the build still succeeds and loading a model says how to provide the
//! library.

use std::path::{Path, PathBuf};
use std::process::Command;

const VERSION: &str = "1.31.1";
const MEMBER: &str = "onnxruntime/capi/libonnxruntime.so.1.31.1";
const SHA256: &str = "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    println!("cargo:rerun-if-env-changed=MLOPS_SKIP_ORT_FETCH");
    #[cfg(feature = "grpc")]
    grpc();
    if std::env::var_os("CARGO_FEATURE_ORT").is_none() {
        return;
    }
    let path = match std::env::var("ORT_DYLIB_PATH") {
        Ok(path) => Ok(PathBuf::from(path)),
        Err(_) => provide(),
    };
    match path {
        Ok(path) => println!("cargo:rustc-env=MLOPS_ORT_DYLIB={}", path.display()),
        Err(why) => {
            println!("cargo:warning=ONNX Runtime {VERSION} was not fetched: {why}");
            println!("cargo:rustc-env=MLOPS_ORT_DYLIB=");
            println!("cargo:rustc-env=MLOPS_ORT_FETCH_ERROR={why}");
        }
    }
}

fn provide() -> Result<PathBuf, String> {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" {
        return Err(format!(
            "the pinned library is for x86_64 Linux, not {target}; set ORT_DYLIB_PATH to an ONNX Runtime >= {VERSION} library"
        ));
    }
    if std::env::var_os("MLOPS_SKIP_ORT_FETCH").is_some() {
        return Err("MLOPS_SKIP_ORT_FETCH is set".into());
    }
    let cache = cache_dir()?;
    let library = cache.join(format!("libonnxruntime.so.{VERSION}"));
    // Until the library is there, every build tries again (a missing path always reruns
    // the script): a failed fetch is not cached.
    println!("cargo:rerun-if-changed={}", library.display());
    if library.is_file() && sha256_of(&library)? == SHA256 {
        return Ok(library);
    }
    std::fs::create_dir_all(&cache)
        .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    // A folder of this build's own, so that concurrent builds never share a partial file.
    let work = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?)
        .join("onnxruntime-wheel");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            "3.11",
            &format!("onnxruntime=={VERSION}"),
            "-d",
        ])
        .arg(&work)
        .status()
        .map_err(|e| format!("cannot run {python} -m pip: {e}"))?;
    if !status.success() {
        return Err(format!(
            "pip download onnxruntime=={VERSION} failed ({status})"
        ));
    }
    let wheel = std::fs::read_dir(&work)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("pip downloaded no wheel")?;
    let extracted = work.join("libonnxruntime.so");
    // Python's zipfile reads the wheel: no unzip tool or extra build dependency needed.
    let status = Command::new(&python)
        .args([
            "-c",
            "import sys, zipfile; open(sys.argv[3], 'wb').write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))",
        ])
        .arg(&wheel)
        .arg(MEMBER)
        .arg(&extracted)
        .status()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !status.success() {
        return Err(format!("cannot extract {MEMBER} from {}", wheel.display()));
    }
    let digest = sha256_of(&extracted)?;
    if digest != SHA256 {
        return Err(format!("{MEMBER} has sha256 {digest}, expected {SHA256}"));
    }
    std::fs::rename(&extracted, &library)
        .or_else(|_| std::fs::copy(&extracted, &library).map(|_| ()))
        .map_err(|e| format!("cannot place {}: {e}", library.display()))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(library)
}

/// `<target dir>/onnxruntime-<version>`, shared by every profile of the workspace.
fn cache_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return Ok(Path::new(&dir).join(format!("onnxruntime-{VERSION}")));
    }
    // OUT_DIR is <target>/[<triple>/]<profile>/build/<pkg>-<hash>/out.
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let profile = out
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
        .ok_or("cannot find the target directory from OUT_DIR")?;
    let target = profile.parent().ok_or("cannot find the target directory")?;
    Ok(target.join(format!("onnxruntime-{VERSION}")))
}

fn sha256_of(path: &Path) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Generates the Open Inference Protocol's gRPC service with the vendored `protoc`: no
/// system protobuf compiler is needed.
#[cfg(feature = "grpc")]
fn grpc() {
    println!("cargo:rerun-if-changed=proto/inference.proto");
    let protoc = match protoc_bin_vendored::protoc_bin_path() {
        Ok(path) => path,
        Err(e) => panic!("no vendored protoc for this platform: {e}"),
    };
    // SAFETY: build scripts are single-threaded; nothing reads the environment meanwhile.
    unsafe { std::env::set_var("PROTOC", protoc) };
    if let Err(e) = tonic_prost_build::configure()
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .compile_protos(&["proto/inference.proto"], &["proto"])
    {
        panic!("cannot generate the gRPC service from proto/inference.proto: {e}");
    }
}
