//! Generates KEDA's external scaler service (feature `keda`) with the vendored `protoc`, so
//! no system protobuf compiler is needed.

fn main() {
    #[cfg(feature = "keda")]
    keda();
}

#[cfg(feature = "keda")]
fn keda() {
    println!("cargo:rerun-if-changed=proto/externalscaler.proto");
    let protoc = match protoc_bin_vendored::protoc_bin_path() {
        Ok(path) => path,
        Err(e) => panic!("no vendored protoc for this platform: {e}"),
    };
    // SAFETY: build scripts are single-threaded; nothing reads the environment meanwhile.
    unsafe { std::env::set_var("PROTOC", protoc) };
    if let Err(e) =
        tonic_prost_build::configure().compile_protos(&["proto/externalscaler.proto"], &["proto"])
    {
        panic!("cannot generate the KEDA external scaler from proto/externalscaler.proto: {e}");
    }
}
