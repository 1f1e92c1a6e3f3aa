//! The Kubernetes scaler against a recorded exchange: kube's real client, its requests
//! answered by an in-test API server (tower-test's mock service) that keeps a Deployment's
//! replicas as the scale subresource does. No API server can run here.

use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use mlops_scale::Error;
use mlops_scale::scaler::{Applied, Controller, Kubernetes, MemorySource, Scaler};
use mlops_scale::testkit::{Fixed, scaler_conformance};
use serde_json::{Value, json};

/// One request as the API server saw it: method, path, content type, body.
type Exchange = (String, String, Option<String>, Value);

/// An API server with one Deployment `ml/vision`: answers `GET` on it and `PATCH` on its
/// scale subresource, 404 for anything else, and `refuse` (a status code) for every patch
/// when set. Its pods are ready as soon as they are asked for, less `unready`.
struct FakeApi {
    replicas: i32,
    unready: i32,
    refuse: Option<u16>,
    seen: Vec<Exchange>,
}

fn deployment(replicas: i32, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "vision", "namespace": "ml", "resourceVersion": "7" },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app.kubernetes.io/name": "vision" } },
            "template": {
                "metadata": { "labels": { "app.kubernetes.io/name": "vision" } },
                "spec": { "containers": [{ "name": "server", "image": "mlops-server:0.1.0" }] },
            },
        },
        "status": { "replicas": replicas, "readyReplicas": ready },
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "code": code, "reason": reason, "message": message,
    })
}

fn respond(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).expect("a status"))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("a response")
}

async fn answer(api: &Mutex<FakeApi>, request: Request<Body>) -> Response<Body> {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = request
        .into_body()
        .collect()
        .await
        .expect("the request body")
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut api = api.lock().expect("the fake API");
    api.seen
        .push((method.clone(), path.clone(), content_type, body.clone()));
    let base = "/apis/apps/v1/namespaces/ml/deployments/vision";
    match (method.as_str(), path.strip_prefix(base)) {
        ("GET", Some("")) => respond(200, &deployment(api.replicas, api.replicas - api.unready)),
        ("PATCH", Some("/scale")) => {
            if let Some(code) = api.refuse {
                return respond(
                    code,
                    &status(code, "Refused", "deployments.apps \"vision\" is refused"),
                );
            }
            let Some(n) = body["spec"]["replicas"].as_i64() else {
                return respond(422, &status(422, "Invalid", "spec.replicas is required"));
            };
            api.replicas = n as i32;
            respond(
                200,
                &json!({
                    "apiVersion": "autoscaling/v1", "kind": "Scale",
                    "metadata": { "name": "vision", "namespace": "ml" },
                    "spec": { "replicas": api.replicas },
                    "status": { "replicas": api.replicas, "selector": "app.kubernetes.io/name=vision" },
                }),
            )
        }
        _ => respond(404, &status(404, "NotFound", &format!("{path} not found"))),
    }
}

/// kube's client over the fake API server, on `runtime`.
fn client(runtime: &tokio::runtime::Runtime, api: Arc<Mutex<FakeApi>>) -> kube::Client {
    runtime.block_on(async {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            while let Some((request, reply)) = handle.next_request().await {
                reply.send_response(answer(&api, request).await);
            }
        });
        kube::Client::new(service, "ml")
    })
}

fn fake(replicas: i32) -> Arc<Mutex<FakeApi>> {
    Arc::new(Mutex::new(FakeApi {
        replicas,
        unready: 0,
        refuse: None,
        seen: Vec::new(),
    }))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn the_scaler_passes_the_conformance_checks_through_the_scale_subresource() {
    let runtime = runtime();
    let api = fake(2);
    let scaler = Kubernetes::new(client(&runtime, api.clone()), "ml", "vision");
    // The checks run on a runtime of their own; the client's worker stays on this one.
    scaler_conformance(&scaler);

    let seen = api.lock().unwrap().seen.clone();
    let patches: Vec<&Exchange> = seen.iter().filter(|e| e.0 == "PATCH").collect();
    assert!(!patches.is_empty());
    for (_, path, content_type, body) in &patches {
        assert_eq!(path, "/apis/apps/v1/namespaces/ml/deployments/vision/scale");
        assert_eq!(
            content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        // Only the count: nothing else of the Deployment is touched.
        assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
        assert!(body["spec"]["replicas"].is_u64(), "{body}");
    }
    assert!(seen.iter().all(|e| e.0 == "GET" || e.0 == "PATCH"));
}

#[test]
fn ready_and_starting_pods_are_read_from_the_deployment_status() {
    let runtime = runtime();
    let api = fake(5);
    api.lock().unwrap().unready = 2;
    let scaler = Kubernetes::new(client(&runtime, api.clone()), "ml", "vision");
    let state = runtime.block_on(scaler.state()).unwrap();
    assert_eq!((state.desired, state.ready, state.starting), (5, 3, 2));
    assert_eq!(scaler.name(), "kubernetes deployment ml/vision");
}

#[test]
fn a_refused_set_is_an_error_that_says_whether_to_retry() {
    let runtime = runtime();
    let api = fake(2);
    let scaler = Kubernetes::new(client(&runtime, api.clone()), "ml", "vision");
    for (code, temporary) in [(403, false), (409, true), (429, true), (503, true)] {
        api.lock().unwrap().refuse = Some(code);
        let err = runtime.block_on(scaler.set_replicas(4)).unwrap_err();
        match &err {
            Error::Scaler {
                temporary: t,
                reason,
                ..
            } => {
                assert_eq!(*t, temporary, "{code}: {err}");
                assert!(reason.contains("cannot set 4 replicas"), "{err}");
            }
            other => panic!("{code}: {other}"),
        }
    }
    assert_eq!(api.lock().unwrap().replicas, 2, "nothing was set");

    // The controller reports the failure and backs off; the count stays.
    api.lock().unwrap().refuse = Some(503);
    let source = MemorySource::new();
    let mut controller = Controller::new(Fixed(6), &source, &scaler);
    let step = runtime.block_on(controller.step(std::time::Duration::from_secs(1)));
    assert!(
        matches!(step.applied, Applied::Failed { to: 6, .. }),
        "{step:?}"
    );
    let step = runtime.block_on(controller.step(std::time::Duration::from_millis(1500)));
    assert!(
        matches!(step.applied, Applied::Waiting { to: 6, .. }),
        "{step:?}"
    );
    api.lock().unwrap().refuse = None;
    let step = runtime.block_on(controller.step(std::time::Duration::from_secs(3)));
    assert_eq!(step.applied, Applied::Set { from: 2, to: 6 });
    assert_eq!(api.lock().unwrap().replicas, 6);
}

#[test]
fn a_missing_deployment_is_a_lasting_error_naming_it() {
    let runtime = runtime();
    let scaler = Kubernetes::new(client(&runtime, fake(1)), "ml", "resnet");
    let err = runtime.block_on(scaler.state()).unwrap_err();
    match &err {
        Error::Scaler {
            scaler, temporary, ..
        } => {
            assert!(scaler.contains("ml/resnet"), "{err}");
            assert!(!temporary, "{err}");
        }
        other => panic!("{other}"),
    }
}
