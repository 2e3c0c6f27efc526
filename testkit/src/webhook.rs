//! The MutatingWebhookConfiguration that points the bed's kube-apiserver at a local
//! injector.

use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// Registers a MutatingWebhookConfiguration for pods in `ns` only, pointing at `url`.
pub async fn register_webhook(
    client: &Client,
    ns: &str,
    url: &str,
    ca_pem: &str,
    failure_policy: &str,
    object_selector: bool,
) -> Result<String, String> {
    let name = format!("spi-test-{ns}");
    let mut hook = json!({
        "name": "peers.stellar.org",
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "timeoutSeconds": 5,
        "failurePolicy": failure_policy,
        "reinvocationPolicy": "IfNeeded",
        "clientConfig": {"url": url, "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem)},
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced"}]
    });
    if object_selector {
        hook["objectSelector"] = json!({"matchLabels": {"app.kubernetes.io/name": "stellar-node"}});
    }
    let cfg: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name}, "webhooks": [hook]
    }))
    .map_err(|e| e.to_string())?;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let _ = api.delete(&name, &DeleteParams::default()).await;
    api.create(&PostParams::default(), &cfg)
        .await
        .map_err(|e| format!("create webhook config: {e}"))?;
    // The apiserver picks new configurations up asynchronously.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(name)
}

pub async fn delete_webhook(client: &Client, name: &str) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
}

/// The start most trials share: an injector watching `ns` with `args` (on the shared bed,
/// ready), and its webhook for `ns` registered with failurePolicy Fail. Returns the
/// webhook's name, for [`delete_webhook`].
pub async fn injector_with_webhook(
    ns: &crate::ns::TestNs,
    args: &[&str],
) -> Result<(crate::injector::Injector, String), String> {
    let bed = crate::bed::bed()?;
    let inj = crate::injector::Injector::start(&ns.name, &bed.kubeconfig, args, true).await?;
    let hook = register_webhook(
        &ns.client,
        &ns.name,
        &inj.url(),
        &inj.ca_pem()?,
        "Fail",
        true,
    )
    .await?;
    Ok((inj, hook))
}
