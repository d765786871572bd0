#!/bin/sh
# The cloud-init shell catalyst-bootstrap replaces (shared/contract.md §1),
# command for command. Only what differs between a node and the benchmark's
# fakes is a variable: the kubeconfig's path and server (k3s: 6443), the
# catalyst-api URL and its CA (curl reads CURL_CA_BUNDLE), and where the
# public copy goes.
set -eu
: "${KUBECONFIG:?}" "${LOCAL_SERVER:?}" "${PUBLIC_SERVER:?}" "${CATALYST_API_URL:?}"
: "${DEPLOYMENT_ID:?}" "${TOKEN:?}"
export KUBECONFIG

# 1. Wait for the API server.
until kubectl get --raw /healthz; do sleep 5; done

# 2. Kubeconfig post-back.
sed "s#${LOCAL_SERVER}#${PUBLIC_SERVER}#" "$KUBECONFIG" > "$KUBECONFIG.public"
chmod 0600 "$KUBECONFIG.public"
curl -fsSL --retry 60 --retry-delay 10 --retry-all-errors -X PUT \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/x-yaml" \
  --data-binary @"$KUBECONFIG.public" \
  "$CATALYST_API_URL/api/v1/deployments/$DEPLOYMENT_ID/kubeconfig"
rm "$KUBECONFIG.public"

# 3. Recovery seed.
kubectl create namespace openbao --dry-run=client -o yaml | kubectl apply -f -
kubectl create secret generic openbao-recovery-seed -n openbao \
  --from-literal=recovery-seed="$(head -c 32 /dev/urandom | base64)" \
  --dry-run=client -o yaml \
  | kubectl annotate --local -f - openbao.openova.io/single-use=true -o yaml \
  | kubectl apply -f -
