//! The hand-off's files as upstream writes them (Flux's `GitRepository` and
//! `Kustomization`, the Crossplane `Provider`), and where the fake API
//! server keeps their objects: shared by the scenarios, the fault matrix,
//! the real-systemd test and the sandbox.

/// `flux-bootstrap.yaml`: two documents, namespaced kinds.
pub const FLUX: &str = "\
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: openova
  namespace: flux-system
spec:
  interval: 1m
  url: https://gitea.handoff-body.example/openova/sovereign-bootstrap.git
  ref: {branch: main}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: bootstrap-kit
  namespace: flux-system
spec:
  interval: 5m
  path: ./clusters/10.0.1.5/bootstrap-kit-handoff-body
  prune: true
  sourceRef: {kind: GitRepository, name: openova}
";

/// The Crossplane Provider: cluster-scoped, best-effort upstream.
pub const PROVIDER_FILE: &str = "\
apiVersion: pkg.crossplane.io/v1
kind: Provider
metadata:
  name: provider-hcloud
spec:
  package: registry.handoff-body.example/crossplane/provider-hcloud:v0.9.0
";

pub const GIT_REPO_PATH: &str =
    "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/openova";
pub const KUSTOMIZATION_PATH: &str =
    "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/bootstrap-kit";
pub const PROVIDER_PATH: &str = "/apis/pkg.crossplane.io/v1/providers/provider-hcloud";

/// Text of the bodies above that no operator surface may show.
pub const BODY_TEXTS: &[&str] = &[
    "handoff-body",
    "sovereign-bootstrap.git",
    "provider-hcloud:v0.9.0",
];
