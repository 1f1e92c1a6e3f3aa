//! Without a usable ONNX Runtime library, loading says so and nothing panics. (Its own
//! test binary: the library is opened once per process.)

#![cfg(feature = "ort")]

use mlops_runtime::{Error, OrtOptions, OrtRuntime};

#[test]
fn a_missing_library_is_a_clear_error() {
    // SAFETY: this binary's only test; no other thread reads the environment.
    unsafe { std::env::set_var("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so") };
    let err = OrtRuntime::new(OrtOptions::default())
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }));
    assert_eq!(
        err.to_string(),
        "ONNX Runtime is unavailable: no library at /nonexistent/libonnxruntime.so; \
         set ORT_DYLIB_PATH to libonnxruntime.so 1.31 or newer"
    );
}
