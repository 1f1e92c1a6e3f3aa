//! A file that is not an ONNX Runtime library is refused with a clear error, not a panic.
//! (Its own test binary: the library is opened once per process.)

#![cfg(feature = "ort")]

use mlops_core::testkit::testdata;
use mlops_runtime::{Error, OrtOptions, OrtRuntime};

#[test]
fn a_file_that_is_not_a_library_is_a_clear_error() {
    let not_a_library = testdata("mlp.onnx");
    // SAFETY: this binary's only test; no other thread reads the environment.
    unsafe { std::env::set_var("ORT_DYLIB_PATH", &not_a_library) };
    let err = OrtRuntime::new(OrtOptions::default())
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }));
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "ONNX Runtime is unavailable: cannot open {}: ",
            not_a_library.display()
        )),
        "{message}"
    );
}
