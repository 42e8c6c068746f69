#!/bin/sh
# Startup script of a GPU node that joins a Kubernetes cluster with kubeadm,
# labelled with where it runs. gpufleet exports GPUFLEET_PLAN, GPUFLEET_FLEET,
# GPUFLEET_CLOUD, GPUFLEET_REGION and GPUFLEET_ZONE right after the first line.
# Fill in the three join values (kubeadm token create --print-join-command).
set -eu

JOIN_ENDPOINT="k8s-api.example.internal:6443"
JOIN_TOKEN="abcdef.0123456789abcdef"
JOIN_CA_HASH="sha256:0000000000000000000000000000000000000000000000000000000000000000"

labels="topology.kubernetes.io/region=${GPUFLEET_REGION}"
if [ -n "${GPUFLEET_ZONE}" ]; then
  labels="${labels},topology.kubernetes.io/zone=${GPUFLEET_ZONE}"
fi
labels="${labels},gpufleet.io/plan=${GPUFLEET_PLAN},gpufleet.io/fleet=${GPUFLEET_FLEET},gpufleet.io/cloud=${GPUFLEET_CLOUD}"

echo "KUBELET_EXTRA_ARGS=--node-labels=${labels}" > /etc/default/kubelet
kubeadm join "${JOIN_ENDPOINT}" --token "${JOIN_TOKEN}" --discovery-token-ca-cert-hash "${JOIN_CA_HASH}"
