//! The server `mlops-profile` launches when no other is named: one model over the Open
//! Inference Protocol (HTTP and gRPC) with one configuration's settings. See
//! `mlops_profile::server` for its flags.

use std::process::ExitCode;

fn main() -> ExitCode {
    mlops_profile::server::child_main().unwrap_or_else(|| {
        eprintln!(
            "usage: mlops-profile-server {} --model PATH --http ADDR --grpc ADDR [...]",
            mlops_profile::launch::SERVE_FLAG
        );
        ExitCode::from(2)
    })
}
