//! What several test files share.

use std::sync::Arc;
use std::time::Duration;

use mlops_core::ModelFormat;
use mlops_core::testkit::testdata;
use mlops_runtime::http::metrics_router;
use mlops_runtime::{EchoRuntime, ModelServer, ModelSpec};

/// Our server with the MLP's signature (an echo runtime whose runs take `delay`: no ONNX
/// Runtime needed) and its metrics on a port of its own; returns it with the metrics URL.
pub(crate) async fn serve_echo_mlp(delay: Duration) -> (Arc<ModelServer>, String) {
    let runtime = EchoRuntime::new().with_delay(delay);
    let server = ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(runtime));
    server
        .load_path(&testdata("mlp.onnx"), ModelSpec::default())
        .expect("the bundled MLP");
    let server = Arc::new(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("its address");
    let app = metrics_router(server.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (server, format!("http://{addr}/metrics"))
}
