//! A namespace of its own for each test (or benchmark), deleted when dropped.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::Value;

use crate::bed::{client, rt};
use crate::wait::wait_for;

/// Numbers namespaces, certificate dirs and DNS query ids apart within one process.
pub(crate) static SEQ: AtomicU32 = AtomicU32::new(0);

pub(crate) fn next_seq() -> u32 {
    SEQ.fetch_add(1, Ordering::SeqCst)
}

/// A namespace of its own for one test, deleted (in the background) when dropped.
pub struct TestNs {
    pub name: String,
    pub client: Client,
}

impl TestNs {
    /// A fresh namespace `<prefix>-<pid>-<n>` on the shared bed.
    pub async fn new(prefix: &str) -> Result<Self, String> {
        Self::with_client(client().await?, prefix).await
    }

    /// A fresh namespace `<prefix>-<pid>-<n>` through `client` (any bed).
    pub async fn with_client(client: Client, prefix: &str) -> Result<Self, String> {
        let name = format!("{prefix}-{}-{}", std::process::id() % 10000, next_seq());
        let api: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .map_err(|e| format!("create namespace {name}: {e}"))?;
        // Pods need the default ServiceAccount, made by the controller manager.
        let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        wait_for(Duration::from_secs(30), "default ServiceAccount", || {
            let sa = sa.clone();
            async move { sa.get_opt("default").await.ok().flatten() }
        })
        .await?;
        Ok(Self { name, client })
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates any namespaced object from JSON.
    pub async fn create<K>(&self, v: Value) -> Result<K, String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let obj: K = serde_json::from_value(v).map_err(|e| format!("bad test object: {e}"))?;
        self.api::<K>()
            .create(&PostParams::default(), &obj)
            .await
            .map_err(|e| format!("create: {e}"))
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let _ =
                rt().block_on(async move { api.delete(&name, &DeleteParams::background()).await });
        })
        .join();
    }
}
