#!/bin/sh
# Drain hook (`[rebalance] drain = "scripts/drain-kubernetes.sh"`): runs on the
# machine running gpufleet before a node is deleted, with GPUFLEET_PLAN,
# GPUFLEET_FLEET, GPUFLEET_CLOUD, GPUFLEET_REGION, GPUFLEET_ZONE and
# GPUFLEET_INSTANCE_ID set. It finds the Kubernetes node whose providerID ends
# in the instance id (aws:///zone/i-..., gce://project/zone/name,
# azure:///.../virtualMachines/name) and drains it. A non-zero exit keeps the
# node: gpufleet reports it and tries again next time.
set -eu

node=$(kubectl get nodes -l "gpufleet.io/fleet=${GPUFLEET_FLEET}" \
  -o jsonpath='{range .items[*]}{.metadata.name} {.spec.providerID}{"\n"}{end}' |
  awk -v id="${GPUFLEET_INSTANCE_ID}" 'length($2) >= length(id) && substr($2, length($2) - length(id) + 1) == id { print $1 }')

if [ -z "${node}" ]; then
  echo "no Kubernetes node for ${GPUFLEET_INSTANCE_ID}: it never joined, nothing to drain"
  exit 0
fi
kubectl cordon "${node}"
kubectl drain "${node}" --ignore-daemonsets --delete-emptydir-data --timeout=9m
