//! Provides the ONNX Runtime shared library for the `ort` feature, so that `cargo run`,
//! `cargo test` and `cargo bench` work on a fresh machine with nothing fetched by hand.
//!
//! The library comes from the pinned `onnxruntime` wheel on PyPI (it carries the C API
//! library itself), or with `cuda` or `tensorrt` from the pinned `onnxruntime-gpu` wheel
//! (the core library and its CUDA and TensorRT execution providers), fetched with `pip
//! download`, and each file is accepted only with its pinned sha256. It is cached under the target directory. `ORT_DYLIB_PATH` set at build time
//! skips all of this; set at run time it overrides the compiled-in path. Without Python or
//! a network the build still succeeds and loading a model says how to provide the
//! library.

use std::path::{Path, PathBuf};
use std::process::Command;

const VERSION: &str = "1.31.1";

/// A pinned ONNX Runtime wheel on PyPI, and the libraries taken out of it.
struct Package {
    /// The PyPI project.
    project: &'static str,
    /// `(member of the wheel, sha256)`; the first is the library the runtime opens, the
    /// rest sit beside it (ONNX Runtime finds its execution providers next to itself).
    members: &'static [(&'static str, &'static str)],
}

/// The CPU build: 24 MB, the core library alone.
const CPU: Package = Package {
    project: "onnxruntime",
    members: &[(
        "onnxruntime/capi/libonnxruntime.so.1.31.1",
        "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
    )],
};

/// The GPU build (features `cuda`, `tensorrt`): a 256 MB wheel with its own core library
/// and the CUDA and TensorRT execution providers, which need CUDA 13 (and TensorRT 10) at
/// run time, not at build time.
const GPU: Package = Package {
    project: "onnxruntime-gpu",
    members: &[
        (
            "onnxruntime/capi/libonnxruntime.so.1.31.1",
            "5104254339ecadae808da771bd0b63b240f0dbd466514234905e54372435c303",
        ),
        (
            "onnxruntime/capi/libonnxruntime_providers_shared.so",
            "086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d",
        ),
        (
            "onnxruntime/capi/libonnxruntime_providers_cuda.so",
            "d5290158115fa5569a3fe8f1f4037ee9b0e86658a96e52f852bbb7039aa88137",
        ),
        (
            "onnxruntime/capi/libonnxruntime_providers_tensorrt.so",
            "1882ee49fdb0e6fc2d272b00cfaf9a3310bf8580a34385c0eec4d82014ea172e",
        ),
    ],
};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    println!("cargo:rerun-if-env-changed=MLOPS_SKIP_ORT_FETCH");
    #[cfg(feature = "grpc")]
    grpc();
    if std::env::var_os("CARGO_FEATURE_ORT").is_none() {
        return;
    }
    let gpu = std::env::var_os("CARGO_FEATURE_CUDA").is_some()
        || std::env::var_os("CARGO_FEATURE_TENSORRT").is_some();
    let package = if gpu { &GPU } else { &CPU };
    let path = match std::env::var("ORT_DYLIB_PATH") {
        Ok(path) => Ok(PathBuf::from(path)),
        Err(_) => provide(package),
    };
    match path {
        Ok(path) => println!("cargo:rustc-env=MLOPS_ORT_DYLIB={}", path.display()),
        Err(why) => {
            println!(
                "cargo:warning=ONNX Runtime {VERSION} ({}) was not fetched: {why}",
                package.project
            );
            println!("cargo:rustc-env=MLOPS_ORT_DYLIB=");
            println!("cargo:rustc-env=MLOPS_ORT_FETCH_ERROR={why}");
        }
    }
}

fn provide(package: &Package) -> Result<PathBuf, String> {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" {
        return Err(format!(
            "the pinned library is for x86_64 Linux, not {target}; set ORT_DYLIB_PATH to an ONNX Runtime >= {VERSION} library"
        ));
    }
    if std::env::var_os("MLOPS_SKIP_ORT_FETCH").is_some() {
        return Err("MLOPS_SKIP_ORT_FETCH is set".into());
    }
    let cache = cache_dir(package)?;
    let placed = |member: &str| cache.join(file_name(member));
    let library = placed(package.members[0].0);
    // Until the libraries are there, every build tries again (a missing path always
    // reruns the script): a failed fetch is not cached.
    for (member, _) in package.members {
        println!("cargo:rerun-if-changed={}", placed(member).display());
    }
    let complete = package.members.iter().all(|(member, sha)| {
        let path = placed(member);
        path.is_file() && sha256_of(&path).is_ok_and(|d| d == *sha)
    });
    if complete {
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
            &format!("{}=={VERSION}", package.project),
            "-d",
        ])
        .arg(&work)
        .status()
        .map_err(|e| format!("cannot run {python} -m pip: {e}"))?;
    if !status.success() {
        return Err(format!(
            "pip download {}=={VERSION} failed ({status})",
            package.project
        ));
    }
    let wheel = std::fs::read_dir(&work)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("pip downloaded no wheel")?;
    for (member, sha) in package.members {
        let extracted = work.join(file_name(member));
        // Python's zipfile reads the wheel: no unzip tool or extra build dependency needed.
        let status = Command::new(&python)
            .args([
                "-c",
                "import shutil, sys, zipfile\nwith zipfile.ZipFile(sys.argv[1]).open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst: shutil.copyfileobj(src, dst)",
            ])
            .arg(&wheel)
            .arg(member)
            .arg(&extracted)
            .status()
            .map_err(|e| format!("cannot run {python}: {e}"))?;
        if !status.success() {
            return Err(format!("cannot extract {member} from {}", wheel.display()));
        }
        let digest = sha256_of(&extracted)?;
        if digest != *sha {
            return Err(format!("{member} has sha256 {digest}, expected {sha}"));
        }
        let dest = placed(member);
        std::fs::rename(&extracted, &dest)
            .or_else(|_| std::fs::copy(&extracted, &dest).map(|_| ()))
            .map_err(|e| format!("cannot place {}: {e}", dest.display()))?;
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(library)
}

/// The last part of a wheel member's path.
fn file_name(member: &str) -> &str {
    member.rsplit('/').next().unwrap_or(member)
}

/// `<target dir>/<project>-<version>`, shared by every profile of the workspace.
fn cache_dir(package: &Package) -> Result<PathBuf, String> {
    let name = format!("{}-{VERSION}", package.project);
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return Ok(Path::new(&dir).join(name));
    }
    // OUT_DIR is <target>/[<triple>/]<profile>/build/<pkg>-<hash>/out.
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let profile = out
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
        .ok_or("cannot find the target directory from OUT_DIR")?;
    let target = profile.parent().ok_or("cannot find the target directory")?;
    Ok(target.join(name))
}

fn sha256_of(path: &Path) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
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
