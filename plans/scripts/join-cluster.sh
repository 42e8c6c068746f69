#!/bin/sh
# Runs once at first boot of every trainer node (EC2 user data): brings up the
# NVIDIA fabric manager and joins the training cluster named by the fleet tags.
set -eu

systemctl enable --now nvidia-fabricmanager

token=$(curl -sf -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
meta() { curl -sf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"; }

plan=$(meta tags/instance/gpufleet-plan)
fleet=$(meta tags/instance/gpufleet-fleet)
echo "joining cluster ${plan}/${fleet} as $(meta instance-id)"
